//! TLS: certificates chosen by SNI, reloaded without restart.

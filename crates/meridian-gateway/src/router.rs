//! The router: host, path, method and header matchers with a fixed precedence.

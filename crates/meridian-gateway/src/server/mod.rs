//! Listeners: accept, TLS, HTTP/1.1 and HTTP/2 on one port.

pub mod listener;
pub mod tls;

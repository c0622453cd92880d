//! Listeners: accept, TLS, HTTP/1.1 and HTTP/2 on one port.

mod h1;
pub mod listener;
pub mod tls;

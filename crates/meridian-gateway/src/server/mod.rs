//! Listeners: accept, TLS, HTTP/1.1 and HTTP/2 on one port.

mod h1;
pub mod listener;
pub mod tls;

use std::pin::Pin;

/// Boxes the future `make` returns, made after its allocation so that it is written into
/// it directly: `Box::pin(future)` builds the whole future (4 KiB for a request's work) on
/// the stack and copies it.
#[inline(always)]
fn boxed_in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

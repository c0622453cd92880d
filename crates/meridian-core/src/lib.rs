//! Layer 0 of Meridian: small primitives every other crate shares.
//!
//! Nothing here knows about config, HTTP routing or any role; it only names things
//! (error codes, request ids), tells time through an injectable [`Clock`], and coordinates
//! shutdown through [`Shutdown`].

pub mod clock;
pub mod duration;
pub mod error_code;
pub mod request_id;
pub mod shutdown;

pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::{format_duration, parse_duration};
pub use error_code::ErrorCode;
pub use request_id::RequestId;
pub use shutdown::Shutdown;

/// The version of the Meridian binary and libraries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! The connection side: endpoints, load balancing, pools.

pub mod h1;
pub mod lb;
pub mod pool;
pub mod resolve;
pub mod response_body;
pub mod service;

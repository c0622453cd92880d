//! The connection side: endpoints, load balancing, pools.

pub mod lb;

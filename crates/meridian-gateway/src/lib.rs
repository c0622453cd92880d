//! Layer 3 of Meridian: the gateway data plane.

//! The policy pipeline: a route's policies compiled once per config version, run in fixed phases.

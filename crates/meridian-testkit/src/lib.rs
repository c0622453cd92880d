//! Test helpers shared by every crate's integration tests.

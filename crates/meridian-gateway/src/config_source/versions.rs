//! The versions a node runs, per kind, and whether a pushed snapshot may replace them: shared by
//! every node role, so it lives in meridian-sync.

pub use meridian_sync::follow::{Running, Verdict};

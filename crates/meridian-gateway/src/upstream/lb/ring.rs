//! The consistent-hash ring (ketama): each endpoint owns points in proportion to its weight,
//! placed by hashing its stable key, so adding or removing one endpoint moves only the keys
//! between its points and their neighbours (about 1/N of them).

use super::{hash_bytes, mix64};

/// Points per unit of weight, as ketama.
const POINTS_PER_WEIGHT: u64 = 160;
/// Most points on a ring (12 bytes each: about 1.5 MiB); heavier weight sums get fewer points per unit.
const MAX_POINTS: u64 = 1 << 17;

#[derive(Debug)]
pub(super) struct Ring {
    /// Point hashes, ascending.
    hashes: Vec<u64>,
    /// `owners[k]` owns `hashes[k]`.
    owners: Vec<u32>,
}

impl Ring {
    pub(super) fn new(weights: &[u64], keys: &[&str]) -> Ring {
        let total: u64 = weights.iter().sum();
        // POINTS_PER_WEIGHT per unit of weight, scaled down together when over MAX_POINTS.
        let budget = total.saturating_mul(POINTS_PER_WEIGHT).min(MAX_POINTS);
        let mut points: Vec<(u64, u32)> = Vec::new();
        for (i, &w) in weights.iter().enumerate() {
            // A missing key falls back to the index, so the ring is still well defined.
            let index_key;
            let key = match keys.get(i) {
                Some(k) => *k,
                None => {
                    index_key = i.to_string();
                    &index_key
                }
            };
            let base = hash_bytes(key.as_bytes());
            let count = (w * budget).checked_div(total).unwrap_or(0).max(1);
            for replica in 0..count {
                points.push((mix64(base ^ replica.wrapping_mul(0xff51_afd7_ed55_8ccd)), i as u32));
            }
        }
        // Equal hashes (vanishingly rare) are ordered by owner so the ring does not depend on
        // input order.
        points.sort_unstable();
        Ring { hashes: points.iter().map(|p| p.0).collect(), owners: points.iter().map(|p| p.1).collect() }
    }

    /// The owner of the first point at or after `hash`, walking on past skipped endpoints.
    pub(super) fn pick(&self, hash: u64, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.hashes.len();
        if n == 0 {
            return None;
        }
        let start = self.hashes.partition_point(|&h| h < hash);
        let mut last_skipped = None;
        for k in 0..n {
            let owner = self.owners[(start + k) % n] as usize;
            if last_skipped == Some(owner) {
                continue;
            }
            if !skip(owner) {
                return Some(owner);
            }
            last_skipped = Some(owner);
        }
        None
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }
}

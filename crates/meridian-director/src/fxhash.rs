//! A fast unkeyed hasher (the multiply-rotate "Fx" hash rustc uses) for the maps a query reads:
//! record sets and names by (lowercase) name, latency rows by region. They are built from the
//! config and never take keys from clients, so the hash-flooding defence of the standard
//! library's keyed SipHash buys nothing there; it cost about 2,000 instructions per query.
//! Maps that clients fill (the rate limiter's buckets) keep the standard hasher.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap<K, V, FxBuild>`: see the module documentation for where it may be used.
pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    use hickory_proto::rr::{LowerName, Name, RecordType};

    use super::*;

    #[test]
    fn names_hash_alike_whatever_their_case_and_maps_find_them() {
        let build = FxBuild::default();
        let lower = |s: &str| LowerName::from(s.parse::<Name>().unwrap());
        assert_eq!(build.hash_one(lower("API.Example.com.")), build.hash_one(lower("api.example.com.")));
        assert_ne!(build.hash_one(lower("a.example.com.")), build.hash_one(lower("b.example.com.")));
        assert_ne!(build.hash_one("a"), build.hash_one("a\0"));
        let mut m: HashMap<(LowerName, RecordType), u8, FxBuild> = HashMap::default();
        for (i, n) in
            ["api.example.com.", "www.api.example.com.", "x.y.z.api.example.com."].iter().enumerate()
        {
            m.insert((lower(n), RecordType::A), i as u8);
        }
        assert_eq!(m.get(&(lower("WWW.api.example.COM."), RecordType::A)), Some(&1));
        assert_eq!(m.get(&(lower("www.api.example.com."), RecordType::AAAA)), None);
    }
}

//! Request ids: propagated when a client sends a sane one, generated otherwise.

use std::fmt;

/// The longest incoming `X-Request-Id` we propagate; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request id as carried in `X-Request-Id` and in error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id: 32 lowercase hex characters (128 bits).
    pub fn generate() -> Self {
        RequestId(String::from_utf8_lossy(&Self::generate_bytes()).into_owned())
    }

    /// A fresh random id as 32 lowercase hex ASCII bytes, without allocating.
    pub fn generate_bytes() -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // One draw from the generator (an array would be drawn a byte at a time), written a
        // byte at a time (shifting a u128 per digit costs several instructions each).
        let v = rand::random::<u128>().to_le_bytes();
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(v) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        out
    }

    /// Whether an incoming id may be propagated as it is (see [`Self::from_incoming`]).
    pub fn is_valid(raw: &[u8]) -> bool {
        !raw.is_empty()
            && raw.len() <= MAX_REQUEST_ID_LEN
            && raw.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
            })
    }

    /// Accepts an incoming id when it is non-empty, short and made of visible ASCII without
    /// separators that could break logs; otherwise `None` and the caller generates one.
    pub fn from_incoming(raw: &[u8]) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_REQUEST_ID_LEN {
            return None;
        }
        let ok = raw.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        });
        ok.then(|| RequestId(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn generated_bytes_are_hex() {
        let b = RequestId::generate_bytes();
        assert!(b.iter().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(b, RequestId::generate_bytes());
    }

    #[test]
    fn incoming_ids_are_checked() {
        assert!(RequestId::from_incoming(b"abc-123").is_some());
        assert!(RequestId::from_incoming(b"").is_none());
        assert!(RequestId::from_incoming(b"has space").is_none());
        assert!(RequestId::from_incoming(b"new\nline").is_none());
        assert!(RequestId::from_incoming(&[b'a'; 129]).is_none());
    }
}

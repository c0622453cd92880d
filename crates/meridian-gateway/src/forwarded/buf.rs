//! The bytes of this hop's forwarding values, built without the formatting machinery and
//! handed out as one shared allocation.
//!
//! `X-Forwarded-For` and `Forwarded` are written one after the other into a buffer on the
//! stack; [`HopBuf::freeze`] moves it into a single reference-counted allocation that both header
//! values slice. Per request that is one `malloc` instead of four (a `BytesMut` each, and the
//! shared header `freeze` adds when the length is not the capacity), and cloning the values
//! (every upstream try clones the request headers) only bumps a counter. Long incoming chains
//! from trusted proxies spill to the heap.

use std::net::IpAddr;

use bytes::Bytes;

/// Bytes kept on the stack before spilling: the common case (peer address, proto, a host name
/// up to ~200 bytes) fits.
const INLINE: usize = 256;

pub(super) struct HopBuf {
    len: usize,
    inline: [u8; INLINE],
    spill: Option<Vec<u8>>,
}

/// The frozen stack buffer, as a `Bytes` owner.
struct Inline {
    len: usize,
    buf: [u8; INLINE],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl HopBuf {
    pub(super) fn new() -> Self {
        HopBuf { len: 0, inline: [0; INLINE], spill: None }
    }

    pub(super) fn len(&self) -> usize {
        match &self.spill {
            Some(v) => v.len(),
            None => self.len,
        }
    }

    pub(super) fn put(&mut self, b: &[u8]) {
        if let Some(v) = &mut self.spill {
            v.extend_from_slice(b);
            return;
        }
        let end = self.len + b.len();
        if end <= INLINE {
            self.inline[self.len..end].copy_from_slice(b);
            self.len = end;
        } else {
            let mut v = Vec::with_capacity(end.max(2 * INLINE));
            v.extend_from_slice(&self.inline[..self.len]);
            v.extend_from_slice(b);
            self.spill = Some(v);
        }
    }

    pub(super) fn put_u8(&mut self, b: u8) {
        self.put(&[b]);
    }

    /// Everything written since `from` (an earlier [`HopBuf::len`]).
    #[cfg(test)]
    pub(super) fn written(&self, from: usize) -> &[u8] {
        match &self.spill {
            Some(v) => &v[from..],
            None => &self.inline[from..self.len],
        }
    }

    /// One allocation holding everything written; slice it per header value.
    pub(super) fn freeze(self) -> Bytes {
        match self.spill {
            Some(v) => Bytes::from(v),
            None => Bytes::from_owner(Inline { len: self.len, buf: self.inline }),
        }
    }

    pub(super) fn put_ip(&mut self, ip: IpAddr) {
        match ip {
            // Built on the stack; one copy.
            IpAddr::V4(v4) => self.put(crate::ascii::ipv4(v4).as_bytes()),
            IpAddr::V6(_) => {
                use std::fmt::Write as _;
                // Writing to this buffer cannot fail.
                let _ = write!(self, "{ip}");
            }
        }
    }
}

impl std::fmt::Write for HopBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

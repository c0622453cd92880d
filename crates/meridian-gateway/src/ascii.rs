//! Numbers and IPv4 addresses as ASCII text on the stack, for the hot paths that write them
//! into headers, framing and log lines (`core::fmt` costs hundreds of instructions a call).

use std::net::Ipv4Addr;

/// Up to 20 bytes of ASCII text built without allocating.
pub struct Text {
    buf: [u8; 20],
    start: usize,
    end: usize,
}

impl Text {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// `n` in decimal.
pub fn decimal(n: u64) -> Text {
    digits::<10>(n)
}

/// `n` in lower-case hexadecimal (chunk sizes).
pub fn hex(n: u64) -> Text {
    digits::<16>(n)
}

/// The radix is a constant so that dividing by it compiles to a multiplication or a shift
/// (a 64-bit division instruction per digit costs tens of cycles).
#[inline]
fn digits<const RADIX: u64>(mut n: u64) -> Text {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = DIGITS[(n % RADIX) as usize];
        n /= RADIX;
        if n == 0 {
            break;
        }
    }
    Text { buf, start, end: 20 }
}

/// Whether `b` is an RFC 9110 `tchar` (a byte of a token): one table lookup.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let marks = b"!#$%&'*+-.^_`|~";
    let mut j = 0;
    while j < marks.len() {
        t[marks[j] as usize] = true;
        j += 1;
    }
    t
};

/// Dotted-decimal IPv4.
pub fn ipv4(ip: Ipv4Addr) -> Text {
    let mut buf = [0u8; 20];
    let mut end = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[end] = b'.';
            end += 1;
        }
        if o >= 100 {
            buf[end] = b'0' + o / 100;
            end += 1;
        }
        if o >= 10 {
            buf[end] = b'0' + o / 10 % 10;
            end += 1;
        }
        buf[end] = b'0' + o % 10;
        end += 1;
    }
    Text { buf, start: 0, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses() {
        assert_eq!(decimal(0).as_bytes(), b"0");
        assert_eq!(decimal(u64::MAX).as_bytes(), u64::MAX.to_string().as_bytes());
        assert_eq!(hex(0x1f4).as_bytes(), b"1f4");
        assert_eq!(hex(u64::MAX).as_bytes(), b"ffffffffffffffff");
        for ip in ["0.0.0.0", "10.0.255.7", "255.255.255.255", "127.0.0.1"] {
            assert_eq!(ipv4(ip.parse().unwrap()).as_bytes(), ip.as_bytes());
        }
    }

    #[test]
    fn tchars_are_rfc_9110s() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let mut expected: Vec<u8> = b"!#$%&'*+-.^_`|~".to_vec();
        expected.extend(b'0'..=b'9');
        expected.extend(b'A'..=b'Z');
        expected.extend(b'a'..=b'z');
        expected.sort_unstable();
        assert_eq!(tchars, expected);
    }
}

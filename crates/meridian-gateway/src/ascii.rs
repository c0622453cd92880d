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

/// Appends `n` in decimal (`itoa`: two digits per step from a table).
#[inline]
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in lower-case hexadecimal (chunk sizes).
pub fn hex(mut n: u64) -> Text {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = DIGITS[(n % 16) as usize];
        n /= 16;
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

/// Dotted-decimal IPv4: each octet's digits and a dot come from a table, four bytes at a time.
pub fn ipv4(ip: Ipv4Addr) -> Text {
    let mut buf = [0u8; 20];
    let mut end = 0;
    for o in ip.octets() {
        let (text, len) = OCTETS[usize::from(o)];
        buf[end..end + 4].copy_from_slice(&text);
        end += usize::from(len);
    }
    // Without the last octet's dot.
    Text { buf, start: 0, end: end - 1 }
}

/// Each octet's digits followed by a dot, and how many of those bytes it uses.
static OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        t[i] = if o >= 100 {
            ([b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + o / 10, b'0' + o % 10, b'.', 0], 3)
        } else {
            ([b'0' + o, b'.', 0, 0], 2)
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses() {
        for n in [0, 7, 10, 99, 100, 65_535, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
        assert_eq!(hex(0x1f4).as_bytes(), b"1f4");
        assert_eq!(hex(u64::MAX).as_bytes(), b"ffffffffffffffff");
        for ip in ["0.0.0.0", "10.0.255.7", "255.255.255.255", "127.0.0.1"] {
            assert_eq!(ipv4(ip.parse().unwrap()).as_bytes(), ip.as_bytes());
        }
        for o in 0..=255u8 {
            let ip = Ipv4Addr::new(o, 255 - o, o / 3, 9);
            assert_eq!(ipv4(ip).as_bytes(), ip.to_string().as_bytes());
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

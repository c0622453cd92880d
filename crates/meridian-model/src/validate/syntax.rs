//! Lexical checks shared by the validators: names, hosts, addresses, HTTP tokens.
//!
//! Each function returns `Err(reason)` with a message that reads well after `path: `.

use std::net::{IpAddr, SocketAddr};

/// A region name: lowercase ASCII letters, digits and `-`.
pub fn region_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("invalid name {s:?}: use lowercase letters, digits and '-'"));
    }
    Ok(())
}

/// A service, route, policy, consumer, node or listener name: `[a-z0-9_-]+`.
pub fn ident(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(format!("invalid name {s:?}: use lowercase letters, digits, '-' and '_'"));
    }
    Ok(())
}

/// A DNS hostname (RFC 1123), any case, without a trailing dot. The last label must not be
/// all digits, so that a mistyped IPv4 address is not taken for a hostname.
pub fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok) && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// A host that a route or certificate matches: a hostname, an IP literal, or `*.suffix`.
pub fn host_pattern(s: &str) -> Result<(), String> {
    if s == "*" {
        return Err("invalid host \"*\": leave `hosts` empty to match any host".into());
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    if name.contains('*') {
        return Err(format!("invalid host {s:?}: only a leading \"*.\" wildcard is allowed"));
    }
    if is_hostname(name) || (name.len() == s.len() && s.parse::<IpAddr>().is_ok()) {
        Ok(())
    } else {
        Err(format!("invalid host {s:?}: expected a hostname, an IP address or \"*.\" and a hostname"))
    }
}

/// `ip:port` (IPv6 in brackets). Port 0 is allowed only when `allow_port_zero` (an ephemeral
/// bind, used by tests).
pub fn socket_addr(s: &str, allow_port_zero: bool) -> Result<SocketAddr, String> {
    let addr: SocketAddr =
        s.parse().map_err(|_| format!("invalid address {s:?}: expected ip:port, e.g. 127.0.0.1:8080"))?;
    if addr.port() == 0 && !allow_port_zero {
        return Err(format!("invalid address {s:?}: port must be 1 to 65535"));
    }
    Ok(addr)
}

/// `ip:port` or `hostname:port`, port 1 to 65535.
pub fn host_port(s: &str) -> Result<(), String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(format!("invalid address {s:?}: port must be 1 to 65535"))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "invalid address {s:?}: expected host:port, e.g. 10.0.0.5:8080 or orders.internal:8080"
        ));
    };
    if host.contains(':') {
        return Err(format!("invalid address {s:?}: an IPv6 address needs brackets, e.g. [::1]:8080"));
    }
    if !is_hostname(host) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("invalid address {s:?}: {host:?} is neither an IP address nor a hostname"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("invalid address {s:?}: port must be 1 to 65535")),
    }
}

/// An RFC 9110 token (`tchar`s): header names, methods, cookie names.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub fn header_name(s: &str) -> Result<(), String> {
    if is_token(s) { Ok(()) } else { Err(format!("invalid header name {s:?}")) }
}

/// A header value: visible ASCII, spaces and tabs, without leading or trailing whitespace.
pub fn header_value(s: &str) -> Result<(), String> {
    if !s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(format!("invalid header value {s:?}: only visible ASCII, spaces and tabs are allowed"));
    }
    if s.trim_matches([' ', '\t']).len() != s.len() {
        return Err(format!("invalid header value {s:?}: leading or trailing whitespace"));
    }
    Ok(())
}

/// An HTTP method: a token without lowercase letters (methods are case-sensitive).
pub fn method(s: &str) -> Result<(), String> {
    if !is_token(s) {
        return Err(format!("invalid method {s:?}"));
    }
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!("invalid method {s:?}: methods are upper case ({:?})", s.to_ascii_uppercase()));
    }
    Ok(())
}

/// Headers the gateway itself manages per hop; a headers policy must not touch them.
pub const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_managed_header(name: &str) -> bool {
    MANAGED_HEADERS.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// A CORS origin: `*` or `scheme://host[:port]` with scheme http or https, nothing after.
pub fn origin(s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    let bad = || {
        format!("invalid origin {s:?}: expected \"*\" or scheme://host[:port], e.g. https://app.example.com")
    };
    let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("invalid origin {s:?}: scheme must be http or https"));
    }
    if rest.contains('/') {
        return Err(format!("invalid origin {s:?}: an origin has no path (not even a trailing '/')"));
    }
    if rest.starts_with('[') {
        // IPv6 literal, with or without a port.
        let with_port = if rest.ends_with(']') { format!("{rest}:1") } else { rest.to_string() };
        return with_port.parse::<SocketAddr>().map(|_| ()).map_err(|_| bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if !is_hostname(host) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(bad());
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => Err(format!("invalid origin {s:?}: port must be 1 to 65535")),
    }
}

/// A trusted proxy: a CIDR (`10.0.0.0/8`) or a single IP address.
pub fn cidr_or_ip(s: &str) -> Result<(), String> {
    if s.parse::<ipnet::IpNet>().is_ok() || s.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("invalid address {s:?}: expected a CIDR (10.0.0.0/8) or an IP address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_hostname("api.example.com"));
        assert!(is_hostname("Orders-1.internal"));
        assert!(is_hostname("localhost"));
        assert!(!is_hostname("300.1.1.1"));
        assert!(!is_hostname("-a.example.com"));
        assert!(!is_hostname("a..b"));
        assert!(!is_hostname("a_b.example.com"));
        assert!(host_pattern("*.example.com").is_ok());
        assert!(host_pattern("127.0.0.1").is_ok());
        assert!(host_pattern("a.*.example.com").is_err());
        assert!(host_pattern("*").is_err());
    }

    #[test]
    fn addresses() {
        assert!(host_port("127.0.0.1:80").is_ok());
        assert!(host_port("[::1]:80").is_ok());
        assert!(host_port("orders.internal:8080").is_ok());
        assert_eq!(
            host_port("orders:0").unwrap_err(),
            "invalid address \"orders:0\": port must be 1 to 65535"
        );
        assert!(host_port("orders").is_err());
        assert!(host_port("orders:70000").is_err());
        assert_eq!(
            host_port("10.0.0.2:99999").unwrap_err(),
            "invalid address \"10.0.0.2:99999\": port must be 1 to 65535"
        );
        assert!(host_port("::1:80").is_err());
        assert!(socket_addr("127.0.0.1:0", true).is_ok());
        assert!(socket_addr("127.0.0.1:0", false).is_err());
        assert!(socket_addr("localhost:80", true).is_err());
        assert!(cidr_or_ip("10.0.0.0/8").is_ok());
        assert!(cidr_or_ip("::1").is_ok());
        assert!(cidr_or_ip("10.0.0.0/33").is_err());
    }

    #[test]
    fn http_tokens() {
        assert!(method("GET").is_ok());
        assert!(method("M-SEARCH").is_ok());
        assert_eq!(method("get").unwrap_err(), "invalid method \"get\": methods are upper case (\"GET\")");
        assert!(method("GE T").is_err());
        assert!(header_name("x-request-id").is_ok());
        assert!(header_name("bad header").is_err());
        assert!(header_value("a b\tc").is_ok());
        assert!(header_value("a\r\nb").is_err());
        assert!(header_value(" a").is_err());
        assert!(is_managed_header("Transfer-Encoding"));
    }

    #[test]
    fn origins() {
        for ok in [
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://[::1]:443",
        ] {
            assert!(origin(ok).is_ok(), "{ok}");
        }
        for bad in ["app.example.com", "ftp://x.com", "https://x.com/", "https://x.com:0", "https://*.x.com"]
        {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}

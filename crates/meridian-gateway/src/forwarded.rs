//! Proxy headers: hop-by-hop removal, Via, X-Forwarded-*, Forwarded, trusted proxies.
//!
//! Rules:
//! - Hop-by-hop headers (RFC 9110 §7.6.1) never cross the gateway: `Connection`, `Keep-Alive`,
//!   `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, `Trailer`, `TE` and every header named
//!   in `Connection`. Exceptions: `TE: trailers` is kept (gRPC needs it); an HTTP/1.1 upgrade
//!   keeps `Upgrade` and sends `Connection: upgrade`; `Proxy-Authorization` is kept; `Host` is
//!   never removed even if `Connection` names it.
//! - Forwarding headers from the client are believed only when the peer is a trusted proxy:
//!   `X-Forwarded-For` gets the peer appended (else is replaced by the peer), `X-Forwarded-Proto`
//!   and `X-Forwarded-Host` are kept (else set from this hop), `Forwarded` (RFC 7239) gets this
//!   hop's element appended (else only this hop's element is sent).
//! - `Via` is appended on requests and responses.

mod buf;
mod proxies;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{CONNECTION, FORWARDED, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use buf::HopBuf;
pub use proxies::TrustedProxies;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const HTTP: HeaderValue = HeaderValue::from_static("http");

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ForwardCtx<'a> {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
    pub trusted: &'a TrustedProxies,
    /// The `Via` value this gateway appends, e.g. `1.1 meridian` (precomputed).
    pub via: &'a HeaderValue,
}

/// Rewrites request headers for the upstream (see the module rules) and returns the client
/// address the gateway believes: when the peer is trusted, the rightmost untrusted address of
/// `X-Forwarded-For` (the leftmost one if all are trusted); otherwise the peer.
///
/// `version`: the version the request arrived with. Upgrades exist only in HTTP/1.1, so
/// `upgrade` is honoured only for HTTP/1.1 requests.
pub fn prepare_request(headers: &mut HeaderMap, version: Version, ctx: &ForwardCtx, upgrade: bool) -> IpAddr {
    let upgrade = upgrade && version == Version::HTTP_11;
    // Room for what this hop adds (X-Forwarded-*, Forwarded, Via, the request id): one growth
    // of the map instead of one per doubling.
    headers.reserve(6);
    let te_trailers =
        headers.contains_key(TE) && headers.get_all(TE).iter().any(|v| has_token(v, "trailers"));
    remove_hop_by_hop(headers, upgrade);
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }

    let peer = ctx.peer.ip().to_canonical();
    let trusted = ctx.trusted.contains(peer);
    let client = if trusted { ctx.trusted.client_from_xff(headers, peer) } else { peer };

    // X-Forwarded-For: one header, the incoming chain (trusted only) then the peer. Both this
    // header's value and Forwarded's are written into one buffer (one allocation, see `buf`).
    let mut buf = HopBuf::new();
    if trusted {
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if buf.len() > 0 {
                buf.put(b", ");
            }
            buf.put(v.as_bytes());
        }
    }
    if buf.len() > 0 {
        buf.put(b", ");
    }
    buf.put_ip(peer);
    let xff_end = buf.len();

    let proto = if ctx.tls { HTTPS } else { HTTP };
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, proto.clone());
    }
    let host = headers.get(HOST).cloned();
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match &host {
            Some(h) => headers.insert(X_FORWARDED_HOST, h.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }

    // Forwarded: the incoming elements (trusted only), then this hop's.
    if trusted {
        for v in headers.get_all(FORWARDED) {
            buf.put(v.as_bytes());
            buf.put(b", ");
        }
    }
    buf.put(b"for=");
    match peer {
        IpAddr::V4(_) => buf.put_ip(peer),
        IpAddr::V6(_) => {
            buf.put(b"\"[");
            buf.put_ip(peer);
            buf.put(b"]\"");
        }
    }
    buf.put(b";proto=");
    buf.put(proto.as_bytes());
    if let Some(host) = &host {
        buf.put(b";host=");
        put_token_or_quoted(&mut buf, host.as_bytes());
    }
    let values = buf.freeze();
    set_bytes(headers, X_FORWARDED_FOR, values.slice(..xff_end));
    set_bytes(headers, FORWARDED, values.slice(xff_end..));

    headers.append(VIA, ctx.via.clone());
    client
}

/// Removes hop-by-hop headers from an upstream response (a 101 keeps `Upgrade` and
/// `Connection: upgrade`) and appends `Via`.
pub fn prepare_response(headers: &mut HeaderMap, status: StatusCode, via: &HeaderValue) {
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    remove_hop_by_hop(headers, switching);
    if switching {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.append(VIA, via.clone());
}

/// Removes the hop-by-hop headers, including those `Connection` names. With `keep_upgrade`,
/// `Upgrade` survives (the caller sets `Connection: upgrade` again).
fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none of these: one pass over the names (cheap comparisons of
    // standard names) saves a hash lookup per hop-by-hop name.
    let present = headers.keys().any(|k| {
        k == CONNECTION
            || k == KEEP_ALIVE
            || k == PROXY_CONNECTION
            || k == TRANSFER_ENCODING
            || k == TE
            || k == TRAILER
            || k == UPGRADE
    });
    if !present {
        return;
    }
    // Headers named in Connection. The values are taken out first (cheap reference-counted
    // clones) so the map can be changed while reading them.
    if let http::header::Entry::Occupied(e) = headers.entry(CONNECTION) {
        let (_, mut values) = e.remove_entry_mult();
        let first = values.next();
        let rest: Vec<HeaderValue> = values.collect(); // repeated Connection headers only
        for v in first.iter().chain(rest.iter()) {
            let Ok(s) = v.to_str() else { continue };
            for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let keep = token.eq_ignore_ascii_case("host")
                    || token.eq_ignore_ascii_case("te")
                    || (keep_upgrade && token.eq_ignore_ascii_case("upgrade"));
                if !keep {
                    headers.remove(token);
                }
            }
        }
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TRANSFER_ENCODING, TE, TRAILER] {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(UPGRADE);
    }
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    crate::wire::has_token(v.as_bytes(), token.as_bytes())
}

/// RFC 7239 values are tokens or quoted strings; `host:port` needs quoting.
fn put_token_or_quoted(buf: &mut HopBuf, v: &[u8]) {
    let token =
        !v.is_empty() && v.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        buf.put(v);
        return;
    }
    buf.put_u8(b'"');
    for &b in v {
        if b == b'"' || b == b'\\' {
            buf.put_u8(b'\\');
        }
        buf.put_u8(b);
    }
    buf.put_u8(b'"');
}

fn set_bytes(headers: &mut HeaderMap, name: HeaderName, value: Bytes) {
    // Built from valid header values, IP addresses and escaped quoted strings, so always valid;
    // if not, the header is dropped rather than sent broken.
    match HeaderValue::from_maybe_shared(value) {
        Ok(v) => headers.insert(name, v),
        Err(_) => headers.remove(name),
    };
}

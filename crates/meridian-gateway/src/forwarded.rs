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

mod proxies;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{CONNECTION, FORWARDED, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};

use crate::body::GwBody;
use crate::error::X_REQUEST_ID;
use crate::raw_head::{self, Own};
pub use proxies::TrustedProxies;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

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

/// The fields this hop adds to a request, kept beside the client's until the request goes
/// out: an HTTP/1.1 endpoint gets them written after the client's fields
/// ([`HopFields::write`]); anything that needs them in the map (HTTP/2 endpoints, peer hops,
/// upgrades) gets them there ([`HopFields::apply`]). Inserting six fields into the request's
/// `HeaderMap` and encoding them from it cost more than the rest of its header work; values
/// are rendered only where they are written, so the common request allocates nothing here.
#[derive(Debug, Clone)]
pub struct HopFields {
    /// The peer's address as text.
    peer: IpText,
    tls: bool,
    /// Whether this hop sends `X-Forwarded-Proto` (a trusted proxy's is kept otherwise).
    set_proto: bool,
    /// The request's Host: `X-Forwarded-Host` (unless a trusted proxy's is kept) and
    /// `Forwarded`'s `host=`.
    host: Option<HeaderValue>,
    set_host: bool,
    /// A trusted proxy's `X-Forwarded-For` and `Forwarded` elements, joined: ours extend them.
    xff_chain: Option<Bytes>,
    forwarded_chain: Option<Bytes>,
    via: HeaderValue,
    request_id: HeaderValue,
}

/// One of [`HopFields`], in the order they are sent.
#[derive(Debug, Clone, Copy)]
enum Hop {
    Proto,
    Host,
    For,
    Forwarded,
    Via,
    RequestId,
}

const HOPS: [Hop; 6] = [Hop::Proto, Hop::Host, Hop::For, Hop::Forwarded, Hop::Via, Hop::RequestId];
/// [`Hop`]'s names (a static: a constant array of names is built and dropped at every use).
static HOP_NAMES: [HeaderName; 6] =
    [X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_FOR, FORWARDED, VIA, X_REQUEST_ID];
/// The same names as the start of an HTTP/1.1 field line.
const HOP_LINE_STARTS: [&[u8]; 6] = [
    b"x-forwarded-proto: ",
    b"x-forwarded-host: ",
    b"x-forwarded-for: ",
    b"forwarded: ",
    b"via: ",
    b"x-request-id: ",
];

impl HopFields {
    fn sent(&self, f: Hop) -> bool {
        match f {
            Hop::Proto => self.set_proto,
            Hop::Host => self.set_host && self.host.is_some(),
            Hop::For | Hop::Forwarded | Hop::Via | Hop::RequestId => true,
        }
    }

    fn proto(&self) -> &'static [u8] {
        if self.tls { b"https" } else { b"http" }
    }

    /// Appends the value of `f` to `out`. Made of field values, an IP address and an escaped
    /// quoted string: always a valid field value.
    fn put_value(&self, f: Hop, out: &mut Vec<u8>) {
        match f {
            Hop::Proto => out.extend_from_slice(self.proto()),
            Hop::Host => out.extend_from_slice(self.host.as_ref().map_or(&b""[..], HeaderValue::as_bytes)),
            Hop::For => {
                if let Some(chain) = &self.xff_chain {
                    out.extend_from_slice(chain);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(self.peer.as_bytes());
            }
            Hop::Forwarded => {
                if let Some(chain) = &self.forwarded_chain {
                    out.extend_from_slice(chain);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(b"for=");
                if self.peer.v6 {
                    out.extend_from_slice(b"\"[");
                    out.extend_from_slice(self.peer.as_bytes());
                    out.extend_from_slice(b"]\"");
                } else {
                    out.extend_from_slice(self.peer.as_bytes());
                }
                out.extend_from_slice(b";proto=");
                out.extend_from_slice(self.proto());
                if let Some(host) = &self.host {
                    out.extend_from_slice(b";host=");
                    put_token_or_quoted(out, host.as_bytes());
                }
            }
            Hop::Via => out.extend_from_slice(self.via.as_bytes()),
            Hop::RequestId => out.extend_from_slice(self.request_id.as_bytes()),
        }
    }

    /// Writes the fields as HTTP/1.1 field lines.
    pub fn write(&self, buf: &mut Vec<u8>) {
        let chains = self.xff_chain.as_ref().map_or(0, Bytes::len)
            + self.forwarded_chain.as_ref().map_or(0, Bytes::len);
        let host = self.host.as_ref().map_or(0, HeaderValue::len);
        buf.reserve(256 + chains + 2 * host + self.request_id.len());
        for f in HOPS {
            if self.sent(f) {
                buf.extend_from_slice(HOP_LINE_STARTS[f as usize]);
                self.put_value(f, buf);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Adds the fields to `headers` (from which [`prepare_request`] removed the client's own,
    /// a trusted proxy's `X-Forwarded-Proto`/`-Host` and any `Via` aside).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for f in HOPS {
            if self.sent(f) {
                let mut v = Vec::new();
                self.put_value(f, &mut v);
                if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                    headers.append(HOP_NAMES[f as usize].clone(), v);
                }
            }
        }
    }

    /// Whether this hop sets the field `name` (a service that hashes on it must see it).
    pub fn sets(name: &str) -> bool {
        HOP_NAMES.iter().any(|n| n.as_str().eq_ignore_ascii_case(name))
    }
}

/// An IP address as text, on the stack.
#[derive(Debug, Clone, Copy)]
struct IpText {
    buf: [u8; 46],
    len: u8,
    v6: bool,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut t = IpText { buf: [0; 46], len: 0, v6: ip.is_ipv6() };
        match ip {
            IpAddr::V4(v4) => t.push(crate::ascii::ipv4(v4).as_bytes()),
            IpAddr::V6(_) => {
                use std::fmt::Write as _;
                // At most 45 bytes ("ffff:…" or an embedded IPv4 form): always fits.
                let _ = write!(t, "{ip}");
            }
        }
        t
    }

    fn push(&mut self, b: &[u8]) {
        let at = usize::from(self.len);
        if let Some(dst) = self.buf.get_mut(at..at + b.len()) {
            dst.copy_from_slice(b);
            self.len += b.len() as u8;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Request fields [`prepare_request`] looks for, as bits.
const HOP_BY_HOP_FIELD: u8 = 1;
const TE_FIELD: u8 = 1 << 1;
const XFF_FIELD: u8 = 1 << 2;
const FORWARDED_FIELD: u8 = 1 << 3;
const XFP_FIELD: u8 = 1 << 4;
const XFH_FIELD: u8 = 1 << 5;
const REQUEST_ID_FIELD: u8 = 1 << 6;

fn request_field(name: &HeaderName) -> u8 {
    if is_hop_by_hop(name) {
        return HOP_BY_HOP_FIELD | if name == TE { TE_FIELD } else { 0 };
    }
    match name.as_str() {
        "x-forwarded-for" => XFF_FIELD,
        "forwarded" => FORWARDED_FIELD,
        "x-forwarded-proto" => XFP_FIELD,
        "x-forwarded-host" => XFH_FIELD,
        "x-request-id" => REQUEST_ID_FIELD,
        _ => 0,
    }
}

/// The values of `name` in `headers` joined with ", " (`None` when there are none).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Bytes> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v.as_bytes());
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

/// Rewrites request headers for the upstream (see the module rules) and returns the client
/// address the gateway believes — when the peer is trusted, the rightmost untrusted address of
/// `X-Forwarded-For` (the leftmost one if all are trusted); otherwise the peer — and the fields
/// this hop adds, `request_id` among them. The client's own copies of those fields leave
/// `headers`.
///
/// `version`: the version the request arrived with. Upgrades exist only in HTTP/1.1, so
/// `upgrade` is honoured only for HTTP/1.1 requests.
pub fn prepare_request(
    headers: &mut HeaderMap,
    version: Version,
    ctx: &ForwardCtx,
    upgrade: bool,
    request_id: &HeaderValue,
) -> (IpAddr, HopFields) {
    let upgrade = upgrade && version == Version::HTTP_11;
    // One pass over the names: most requests carry none of the fields looked for.
    let scan = |headers: &HeaderMap| headers.keys().fold(0u8, |bits, k| bits | request_field(k));
    let mut present = scan(headers);
    if present & HOP_BY_HOP_FIELD != 0 {
        let te_trailers =
            present & TE_FIELD != 0 && headers.get_all(TE).iter().any(|v| has_token(v, "trailers"));
        strip_hop_by_hop(headers, upgrade);
        if te_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        // `Connection` may have named any of them.
        present = scan(headers);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let has = |bit: u8| present & bit != 0;

    let peer = ctx.peer.ip().to_canonical();
    let trusted = ctx.trusted.contains(peer);
    let client = if trusted && has(XFF_FIELD) { ctx.trusted.client_from_xff(headers, peer) } else { peer };
    // A trusted proxy's chains are extended, its X-Forwarded-Proto/-Host kept; anyone else's
    // are replaced.
    let fields = HopFields {
        peer: IpText::new(peer),
        tls: ctx.tls,
        set_proto: !(trusted && has(XFP_FIELD)),
        host: headers.get(HOST).cloned(),
        set_host: !(trusted && has(XFH_FIELD)),
        xff_chain: (trusted && has(XFF_FIELD)).then(|| joined(headers, &X_FORWARDED_FOR)).flatten(),
        forwarded_chain: (trusted && has(FORWARDED_FIELD)).then(|| joined(headers, &FORWARDED)).flatten(),
        via: ctx.via.clone(),
        request_id: request_id.clone(),
    };
    let mut remove = |bit: u8, name: HeaderName| {
        if has(bit) {
            headers.remove(name);
        }
    };
    remove(XFF_FIELD, X_FORWARDED_FOR);
    remove(FORWARDED_FIELD, FORWARDED);
    remove(REQUEST_ID_FIELD, X_REQUEST_ID);
    if fields.set_proto {
        remove(XFP_FIELD, X_FORWARDED_PROTO);
    }
    if fields.set_host {
        remove(XFH_FIELD, X_FORWARDED_HOST);
    }
    (client, fields)
}

/// Removes hop-by-hop headers from an upstream response (a 101 keeps `Upgrade` and
/// `Connection: upgrade`) and appends `Via` (held with the endpoint's passed-through fields,
/// when it has them: they are without hop-by-hop fields already).
pub fn prepare_response(resp: &mut Response<GwBody>, via: &HeaderValue) {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    remove_hop_by_hop(headers, switching);
    if switching {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    raw_head::set_own(resp, Own::Via, via.clone());
}

/// Removes the hop-by-hop headers, including those `Connection` names. With `keep_upgrade`,
/// `Upgrade` survives (the caller sets `Connection: upgrade` again).
fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of these: one pass over the names (cheap comparisons of
    // standard names) saves a hash lookup per hop-by-hop name.
    if headers.keys().any(is_hop_by_hop) {
        strip_hop_by_hop(headers, keep_upgrade);
    }
}

fn is_hop_by_hop(k: &HeaderName) -> bool {
    k == CONNECTION
        || k == KEEP_ALIVE
        || k == PROXY_CONNECTION
        || k == TRANSFER_ENCODING
        || k == TE
        || k == TRAILER
        || k == UPGRADE
}

/// [`remove_hop_by_hop`]'s work, once one is known to be there.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
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
fn put_token_or_quoted(out: &mut Vec<u8>, v: &[u8]) {
    if !v.is_empty() && v.iter().all(|&b| crate::ascii::is_tchar(b)) {
        out.extend_from_slice(v);
        return;
    }
    // Runs between the bytes to escape go in one copy (a host with a port is the usual
    // quoted value, and has none).
    out.push(b'"');
    let mut rest = v;
    while let Some(i) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(&[b'\\', rest[i]]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

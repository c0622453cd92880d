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

use crate::error::X_REQUEST_ID;
use crate::raw_head::{self, Own, RawFields};
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

/// The fields this hop adds to a request, kept beside the client's until the request goes
/// out: an HTTP/1.1 endpoint gets them written after the client's fields
/// ([`HopFields::write`]); anything that needs them in the map (HTTP/2 endpoints, peer hops,
/// upgrades) gets them there ([`HopFields::apply`]). Inserting six fields into the request's
/// `HeaderMap` and encoding them from it cost more than the rest of its header work.
#[derive(Debug, Clone)]
pub struct HopFields {
    /// `X-Forwarded-Proto`, unless a trusted proxy's is kept.
    proto: Option<HeaderValue>,
    /// `X-Forwarded-Host`, unless a trusted proxy's is kept (none without a Host).
    host: Option<HeaderValue>,
    /// `X-Forwarded-For` and `Forwarded`: slices of one allocation.
    xff: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
    via: HeaderValue,
    request_id: HeaderValue,
}

impl HopFields {
    /// The fields in the order they are sent.
    fn fields(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        let values = [
            self.proto.as_ref(),
            self.host.as_ref(),
            self.xff.as_ref(),
            self.forwarded.as_ref(),
            Some(&self.via),
            Some(&self.request_id),
        ];
        HOP_FIELDS.iter().zip(values).filter_map(|(n, v)| Some((n, v?)))
    }

    /// Writes the fields as HTTP/1.1 field lines.
    pub fn write(&self, buf: &mut Vec<u8>) {
        for (name, value) in self.fields() {
            crate::wire::put_field(buf, name, value);
        }
    }

    /// Adds the fields to `headers` (from which [`prepare_request`] removed the client's own,
    /// a trusted proxy's `X-Forwarded-Proto`/`-Host` and any `Via` aside).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            headers.append(name, value.clone());
        }
    }

    /// Whether this hop sets the field `name` (a service that hashes on it must see it).
    pub fn sets(name: &str) -> bool {
        HOP_FIELDS.iter().any(|n| n.as_str().eq_ignore_ascii_case(name))
    }
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
    // One pass over the names: most requests carry none of the fields this hop sets.
    let mut present = [false; 5];
    for k in headers.keys() {
        for (p, name) in present.iter_mut().zip(&OWN_REQUEST_FIELDS) {
            *p |= k == name;
        }
    }
    let [has_xff, has_forwarded, has_proto, has_host, has_rid] = present;

    // X-Forwarded-For: one header, the incoming chain (trusted only) then the peer. Both this
    // header's value and Forwarded's are written into one buffer (one allocation, see `buf`).
    let mut buf = HopBuf::new();
    if trusted && has_xff {
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

    let proto_value = if ctx.tls { HTTPS } else { HTTP };
    let host = headers.get(HOST);
    let keep_proto = trusted && has_proto;
    let keep_host = trusted && has_host;
    let proto = (!keep_proto).then(|| proto_value.clone());
    let x_host = if keep_host { None } else { host.cloned() };

    // Forwarded: the incoming elements (trusted only), then this hop's.
    if trusted && has_forwarded {
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
    buf.put(proto_value.as_bytes());
    if let Some(host) = host {
        buf.put(b";host=");
        put_token_or_quoted(&mut buf, host.as_bytes());
    }
    let values = buf.freeze();
    // Built from valid field values, IP addresses and escaped quoted strings, so always valid;
    // if not, the field is dropped rather than sent broken.
    let value = |b: Bytes| HeaderValue::from_maybe_shared(b).ok();
    let fields = HopFields {
        proto,
        host: x_host,
        xff: value(values.slice(..xff_end)),
        forwarded: value(values.slice(xff_end..)),
        via: ctx.via.clone(),
        request_id: request_id.clone(),
    };

    if has_xff {
        headers.remove(X_FORWARDED_FOR);
    }
    if has_forwarded {
        headers.remove(FORWARDED);
    }
    if has_proto && !keep_proto {
        headers.remove(X_FORWARDED_PROTO);
    }
    if has_host && !keep_host {
        headers.remove(X_FORWARDED_HOST);
    }
    if has_rid {
        headers.remove(X_REQUEST_ID);
    }
    (client, fields)
}

/// The request fields this hop sets, as [`prepare_request`] looks for them (statics: a
/// constant array of names is built and dropped at every use).
static OWN_REQUEST_FIELDS: [HeaderName; 5] =
    [X_FORWARDED_FOR, FORWARDED, X_FORWARDED_PROTO, X_FORWARDED_HOST, X_REQUEST_ID];
/// [`HopFields`]'s names, in the order they are sent.
static HOP_FIELDS: [HeaderName; 6] =
    [X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_FOR, FORWARDED, VIA, X_REQUEST_ID];

/// Removes hop-by-hop headers from an upstream response (a 101 keeps `Upgrade` and
/// `Connection: upgrade`) and appends `Via` (held with the endpoint's passed-through fields
/// `raw`, when it has them: they are without hop-by-hop fields already).
pub fn prepare_response(
    headers: &mut HeaderMap,
    raw: Option<&mut RawFields>,
    status: StatusCode,
    via: &HeaderValue,
) {
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    remove_hop_by_hop(headers, switching);
    if switching {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    raw_head::set_own(raw, headers, Own::Via, via.clone());
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

//! An endpoint's response header fields, passed to an HTTP/1.1 client from the bytes they
//! came in.
//!
//! Making an `http::HeaderMap` of an endpoint's response head (a name and a value built and
//! hashed per field), editing it and writing it out again was the largest share of the
//! gateway's per-request work that nginx does not do (docs/benchmarks.md, issue 6). When
//! nothing in the gateway reads the endpoint's fields (no response policy renames one, and the
//! answer comes from an endpoint of this region), the endpoint's field lines are kept as they
//! came ([`RawFields`], carried by the response body) and our HTTP/1.1 loop writes them from
//! those bytes. The response's `HeaderMap` then holds only what the gateway and the route's
//! policies add (`Via`, the request id, the serving region, a sticky-session cookie, CORS
//! fields), written after them.
//!
//! On the way, the fields are dropped that the `HeaderMap` path drops or replaces: the
//! hop-by-hop ones (RFC 9110 §7.6.1), `Content-Length` next to `Transfer-Encoding`, the fields
//! the gateway sets itself (`X-Request-Id`, `x-meridian-region`,
//! `x-meridian-region-unavailable`) and those the route's response policies set or remove. The
//! endpoint's `Content-Length` is written where it is the framing (or, for HEAD, 204 and 304,
//! the length announced); otherwise the writer frames the body itself, as with the map.
//! Anything unusual (a `Connection` naming other fields, a repeated `Content-Length`, bare LF
//! line ends, a head cut into more than a few runs) takes the `HeaderMap` path. hyper (HTTP/2
//! and handed-over connections) writes from the map only: there the fields go into it first
//! ([`materialize`]).
//!
//! The gateway's own fields on such an answer (`x-meridian-region`, `Via`, `X-Request-Id`)
//! travel with the passed-through ones too ([`set_own`]) and are written after the map's,
//! unless a response policy of the route sets or removes one of them: then they go into the
//! map, where the policy sees them. An answer that only passes through then needs no map.

use bytes::Bytes;
use http::header::VIA;
use http::{HeaderMap, HeaderName, HeaderValue, Response, response};

use crate::body::GwBody;
use crate::error::X_REQUEST_ID;
use crate::peer::SERVED_BY;

pub use crate::wire::Span;

/// Most runs of field lines a head may be cut into (by dropped fields and its
/// `Content-Length`); heads cut into more take the `HeaderMap` path.
const MAX_PIECES: usize = 8;

/// The field lines of an endpoint's response head to pass on: runs of the head's bytes,
/// CRLFs included.
#[derive(Clone)]
pub struct RawFields {
    head: Bytes,
    pieces: [(u32, u32); MAX_PIECES],
    n: u8,
    /// The `Content-Length` line (a piece of its own) and its value.
    length: Option<(u8, u64)>,
    has_date: bool,
    /// The gateway's own fields ([`Own`]), written after the map's; `None` when the route's
    /// response policies touch one of them (then they go into the map).
    own: Option<[Option<HeaderValue>; 3]>,
}

/// The gateway's own fields on a proxied answer, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub enum Own {
    /// `x-meridian-region`: the region that served.
    Region,
    /// `Via`, after the endpoint's.
    Via,
    /// `X-Request-Id`.
    RequestId,
}

/// [`Own`]'s names.
pub static OWN_NAMES: [HeaderName; 3] = [SERVED_BY, VIA, X_REQUEST_ID];
/// The same names as the start of an HTTP/1.1 field line.
const OWN_LINE_STARTS: [&[u8]; 3] = [b"x-meridian-region: ", b"via: ", b"x-request-id: "];

/// Sets one of the gateway's own fields on a response: beside the endpoint's passed-through
/// fields when there are some and no policy of the route touches it, else in its map (`Via`
/// appended after the endpoint's, the others replacing any).
pub fn set_own(resp: &mut Response<GwBody>, field: Own, value: HeaderValue) {
    if let Some(value) = hold_own(resp.body_mut().raw_fields_mut(), field, value) {
        put_own(resp.headers_mut(), field, value);
    }
}

/// Holds one of the gateway's own fields beside the endpoint's passed-through fields, or gives
/// it back for the map ([`put_own`]).
pub fn hold_own(raw: Option<&mut RawFields>, field: Own, value: HeaderValue) -> Option<HeaderValue> {
    match raw.and_then(|r| r.own.as_mut()) {
        Some(own) => {
            own[field as usize] = Some(value);
            None
        }
        None => Some(value),
    }
}

/// Puts one of the gateway's own fields into a response's map.
pub fn put_own(headers: &mut HeaderMap, field: Own, value: HeaderValue) {
    let name = OWN_NAMES[field as usize].clone();
    match field {
        Own::Via => headers.append(name, value),
        Own::Region | Own::RequestId => headers.insert(name, value).is_some(),
    };
}

/// What the pass-through does with one field of an endpoint's head.
#[derive(PartialEq, Eq)]
enum Kind {
    Keep,
    Date,
    Length,
    /// Hop-by-hop, or a field the gateway sets itself.
    Drop,
    /// A `Connection` naming other fields: the map path removes those too.
    Unusual,
}

fn kind(name: &[u8], value: &[u8]) -> Kind {
    let is = |n: &[u8]| crate::wire::name_is(name, n);
    match name.len() {
        2 if is(b"te") => Kind::Drop,
        4 if is(b"date") => Kind::Date,
        7 if is(b"trailer") || is(b"upgrade") => Kind::Drop,
        10 if is(b"connection") => {
            let only_persistence = value.split(|&b| b == b',').map(<[u8]>::trim_ascii).all(|t| {
                t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
            });
            if only_persistence { Kind::Drop } else { Kind::Unusual }
        }
        10 if is(b"keep-alive") => Kind::Drop,
        12 if is(b"x-request-id") => Kind::Drop,
        14 if is(b"content-length") => Kind::Length,
        16 if is(b"proxy-connection") => Kind::Drop,
        17 if is(b"transfer-encoding") || is(b"x-meridian-region") => Kind::Drop,
        29 if is(b"x-meridian-region-unavailable") => Kind::Drop,
        _ => Kind::Keep,
    }
}

impl RawFields {
    /// The field lines of `head` to pass on, or `None` when the head needs the `HeaderMap`
    /// path. `fields`: name and value ranges of each field in `head`, in order. `length`: its
    /// `Content-Length` as the framing read it, `None` with a `Transfer-Encoding` too (then the
    /// `Content-Length` is not passed on). `replaced`: names the route's response policies
    /// replace or remove, dropped too.
    pub fn new(
        head: &Bytes,
        fields: &[Span],
        length: Option<u64>,
        replaced: &[HeaderName],
    ) -> Option<Box<RawFields>> {
        let mut raw = RawFields {
            head: head.clone(),
            pieces: [(0, 0); MAX_PIECES],
            n: 0,
            length: None,
            has_date: false,
            own: None,
        };
        if !replaced.iter().any(|r| OWN_NAMES.contains(r)) {
            raw.own = Some(Default::default());
        }
        // Field lines run from a name to the next name; the last one to the empty line.
        let block_end = u32::try_from(head.len().checked_sub(2)?).ok()?;
        let mut open: Option<(u32, u32)> = None;
        for (i, &(ns, ne, vs, ve)) in fields.iter().enumerate() {
            let line_end = fields.get(i + 1).map_or(block_end, |f| f.0);
            // Passed on verbatim only with CRLF line ends (a bare LF is accepted when read).
            if head.get((line_end as usize).saturating_sub(2)..line_end as usize) != Some(b"\r\n") {
                return None;
            }
            let name = &head[ns as usize..ne as usize];
            let mut k = kind(name, &head[vs as usize..ve as usize]);
            if k != Kind::Unusual
                && replaced.iter().any(|r| crate::wire::name_is(name, r.as_str().as_bytes()))
            {
                k = Kind::Drop;
            }
            match k {
                Kind::Keep | Kind::Date => {
                    raw.has_date |= k == Kind::Date;
                    open = Some(match open {
                        Some((start, _)) => (start, line_end),
                        None => (ns, line_end),
                    });
                    continue;
                }
                Kind::Unusual => return None,
                Kind::Drop | Kind::Length => {}
            }
            if let Some(piece) = open.take() {
                raw.push(piece)?;
            }
            if k == Kind::Length
                && let Some(value) = length
            {
                if raw.length.is_some() {
                    return None;
                }
                raw.length = Some((raw.n, value));
                raw.push((ns, line_end))?;
            }
        }
        if let Some(piece) = open {
            raw.push(piece)?;
        }
        if head.get(block_end as usize..) != Some(b"\r\n") {
            return None;
        }
        // Boxed: it travels with the response body, which moves a few times on its way.
        Some(Box::new(raw))
    }

    fn push(&mut self, piece: (u32, u32)) -> Option<()> {
        *self.pieces.get_mut(usize::from(self.n))? = piece;
        self.n += 1;
        Some(())
    }

    /// Bytes of the endpoint's head (at least what [`RawFields::write`] writes).
    pub fn size(&self) -> usize {
        self.head.len()
    }

    /// Whether a `Date` field is among them.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The endpoint's `Content-Length`, if it sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.length.map(|(_, v)| v)
    }

    /// Writes the field lines; the `Content-Length` line only with `with_length`.
    pub fn write(&self, buf: &mut Vec<u8>, with_length: bool) {
        let skip = if with_length { None } else { self.length.map(|(i, _)| i) };
        for (i, &(start, end)) in self.pieces[..usize::from(self.n)].iter().enumerate() {
            if skip != Some(i as u8) {
                buf.extend_from_slice(&self.head[start as usize..end as usize]);
            }
        }
    }

    /// Writes the gateway's own fields held here (after the map's).
    pub fn write_own(&self, buf: &mut Vec<u8>) {
        let Some(own) = &self.own else { return };
        for (start, value) in OWN_LINE_STARTS.iter().zip(own) {
            if let Some(v) = value {
                buf.extend_from_slice(start);
                buf.extend_from_slice(v.as_bytes());
                buf.extend_from_slice(b"\r\n");
            }
        }
    }

    fn own_fields(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        let own = self.own.iter().flatten();
        OWN_NAMES.iter().zip(own).filter_map(|(n, v)| Some((n, v.as_ref()?)))
    }

    /// The fields as map entries, with room for `extra` more.
    fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(2 * usize::from(self.n) + extra + 3);
        for &(start, end) in &self.pieces[..usize::from(self.n)] {
            let mut at = start as usize;
            while at < end as usize {
                let line_end =
                    at + self.head[at..end as usize].windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                let line = &self.head[at..line_end];
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    let value = self.head.slice(at + colon + 1..line_end);
                    let trimmed = value.trim_ascii();
                    let value = value.slice_ref(trimmed);
                    // Checked by the head's parser already: a token, and a value without controls.
                    if let (Ok(n), Ok(v)) =
                        (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_maybe_shared(value))
                    {
                        map.append(n, v);
                    }
                }
                at = line_end + 2;
            }
        }
        map
    }
}

/// Puts an endpoint's passed-through fields into the response's `HeaderMap`, before the ones
/// the gateway added, for anything but our HTTP/1.1 writer; a response without them is
/// returned as it is.
pub fn materialize(resp: Response<GwBody>) -> Response<GwBody> {
    if resp.body().raw_fields().is_none() {
        return resp;
    }
    let (mut parts, mut body) = resp.into_parts();
    if let Some(raw) = body.take_raw_fields() {
        into_parts(&mut parts, *raw);
    }
    Response::from_parts(parts, body)
}

fn into_parts(parts: &mut response::Parts, raw: RawFields) {
    let added = std::mem::take(&mut parts.headers);
    let mut map = raw.to_map(added.len());
    let mut last: Option<HeaderName> = None;
    for (name, value) in added {
        if let Some(n) = name {
            last = Some(n);
        }
        if let Some(n) = &last {
            map.append(n.clone(), value);
        }
    }
    for (name, value) in raw.own_fields() {
        map.append(name.clone(), value.clone());
    }
    parts.headers = map;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(head: &str) -> (Bytes, Vec<Span>) {
        let mut out = Vec::new();
        let mut at = head.find("\r\n").unwrap() + 2;
        while !head[at..].starts_with("\r\n") {
            let end = at + head[at..].find("\r\n").unwrap();
            let colon = at + head[at..end].find(':').unwrap();
            let vs = colon + 1 + head[colon + 1..end].len() - head[colon + 1..end].trim_start().len();
            out.push((at as u32, colon as u32, vs as u32, end as u32));
            at = end + 2;
        }
        (Bytes::copy_from_slice(head.as_bytes()), out)
    }

    /// The Content-Length value in `head`, as the framing reads it.
    fn length(head: &[u8]) -> Option<u64> {
        let text = std::str::from_utf8(head).unwrap().to_ascii_lowercase();
        let at = text.find("content-length:")? + "content-length:".len();
        text[at..].split("\r\n").next()?.trim().parse().ok()
    }

    fn written(raw: &RawFields, with_length: bool) -> String {
        let mut buf = Vec::new();
        raw.write(&mut buf, with_length);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn hop_by_hop_and_gateway_fields_are_dropped() {
        let (head, spans) = fields(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             X-Request-Id: theirs\r\nx-meridian-region: elsewhere\r\nContent-Length: 5\r\nDate: Thu, 26 Nov 2026 08:00:00 GMT\r\n\
             Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        );
        let raw = RawFields::new(&head, &spans, length(&head), &[]).unwrap();
        assert!(raw.has_date());
        assert_eq!(raw.content_length(), Some(5));
        assert_eq!(
            written(&raw, false),
            "Content-Type: text/plain\r\nDate: Thu, 26 Nov 2026 08:00:00 GMT\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        );
        assert_eq!(
            written(&raw, true),
            "Content-Type: text/plain\r\nContent-Length: 5\r\nDate: Thu, 26 Nov 2026 08:00:00 GMT\r\n\
             Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        );
    }

    #[test]
    fn unusual_heads_take_the_map_path() {
        let (head, spans) = fields("HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nX-Secret: 1\r\n\r\n");
        assert!(
            RawFields::new(&head, &spans, length(&head), &[]).is_none(),
            "Connection names another field"
        );
        let (head, spans) = fields("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert!(RawFields::new(&head, &spans, length(&head), &[]).is_none(), "repeated Content-Length");
        let cut: String = (0..MAX_PIECES).map(|i| format!("X-{i}: v\r\nKeep-Alive: 1\r\n")).collect();
        let (head, spans) = fields(&format!("HTTP/1.1 200 OK\r\n{cut}X-Last: v\r\n\r\n"));
        assert!(RawFields::new(&head, &spans, length(&head), &[]).is_none(), "more runs than MAX_PIECES");
        let (_, mut spans) = fields("HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\n\r\n");
        let bare_lf = Bytes::from_static(b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n");
        spans[1] = (spans[1].0 - 1, spans[1].1 - 1, spans[1].2 - 1, spans[1].3 - 1);
        assert!(RawFields::new(&bare_lf, &spans, None, &[]).is_none(), "bare LF line end");
        let (head, spans) =
            fields("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        let raw = RawFields::new(&head, &spans, None, &[]).unwrap();
        assert_eq!((raw.content_length(), written(&raw, true).as_str()), (None, ""));
    }

    #[test]
    fn own_field_lines_start_with_their_names() {
        for (name, start) in OWN_NAMES.iter().zip(OWN_LINE_STARTS) {
            assert_eq!(start, format!("{}: ", name.as_str()).as_bytes());
        }
    }

    #[test]
    fn materialized_fields_come_before_the_gateways() {
        let (head, spans) =
            fields("HTTP/1.1 200 OK\r\nVia: 1.1 upstream\r\nX-A:  1 \r\nContent-Length: 0\r\n\r\n");
        let raw = RawFields::new(&head, &spans, length(&head), &[]).unwrap();
        let mut parts = Response::new(()).into_parts().0;
        parts.headers.append("via", HeaderValue::from_static("1.1 meridian"));
        parts.headers.append("x-b", HeaderValue::from_static("1"));
        parts.headers.append("x-b", HeaderValue::from_static("2"));
        into_parts(&mut parts, *raw);
        let via: Vec<_> = parts.headers.get_all("via").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(via, ["1.1 upstream", "1.1 meridian"]);
        assert_eq!(parts.headers.get_all("x-b").iter().count(), 2);
        assert_eq!(parts.headers["x-a"], "1");
        assert_eq!(parts.headers["content-length"], "0");
    }
}

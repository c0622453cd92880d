//! The DNS transports: a UDP receive loop and TCP connections, both answering through
//! [`respond`]: decode with hickory-proto, [`reply`], encode with hickory-proto's encoder
//! (`emit_message_parts`) into a buffer reused from one query to the next.
//!
//! Answers whose records all belong to the question's name (no CNAME followed, no authority or
//! additional section) are put together from pieces hickory-proto encoded: the header
//! (`Header::emit`), the question as received, each record's bytes encoded when the config
//! version was compiled ([`Rr`](crate::view::Rr)), and the OPT record (`Record::emit`). Nothing
//! is patched. Anything else, and any answer that would not fit the client's size, goes through
//! `emit_message_parts`, which also truncates.
//!
//! UDP is served by one receive loop per runtime worker, sharing the socket (on Linux receiving
//! and sending in batches, [`batch`]): no task, channel or buffer per query (hickory-server
//! spawns a task per request, which cost about half of the director's instructions per query;
//! docs/benchmarks.md). TCP: one task per connection, RFC 1035 §4.2.2 framing, queries
//! answered in order, idle connections closed after the timeout.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, EmitAndCount, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
    emit_message_parts,
};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{LowerName, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding};
use ipnet::IpNet;
use rustc_hash::FxBuildHasher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::answer::{ClientInfo, Rcode, Reply, reply};
use crate::rrl::RrlDecision;
use crate::server::Shared;
use crate::view::Rr;

#[cfg(target_os = "linux")]
mod batch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Largest UDP message we read (EDNS(0) payloads are at most 4096 in our config; anything
/// longer is truncated by the kernel and fails to decode, which answers FORMERR).
pub(crate) const UDP_RECEIVE: usize = 4096;

/// Serves UDP on `socket` until `shutdown`: one receive loop per runtime worker.
pub(crate) async fn serve_udp(socket: UdpSocket, state: Arc<Shared>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let workers = tokio::runtime::Handle::current().metrics().num_workers().max(1);
    #[cfg(target_os = "linux")]
    use batch::udp_loop;
    let loops: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(udp_loop(socket.clone(), state.clone(), shutdown.clone())))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

/// One datagram per receive and per send (Linux batches them: [`batch`]).
#[cfg(not(target_os = "linux"))]
async fn udp_loop(socket: Arc<UdpSocket>, state: Arc<Shared>, shutdown: CancellationToken) {
    let mut msg = vec![0u8; UDP_RECEIVE];
    let mut out = Vec::with_capacity(UDP_RECEIVE);
    loop {
        let (len, src) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut msg) => match r {
                Ok(r) => r,
                // ICMP errors from earlier sends (ECONNREFUSED and the like) surface here; the
                // socket itself stays usable.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
        };
        if !answerable(src) {
            continue;
        }
        if respond(&state, &msg[..len], src, Transport::Udp, &mut out)
            && let Err(e) = socket.send_to(&out, src).await
        {
            tracing::debug!(error = %e, %src, "udp send failed");
        }
    }
}

/// Whether a response can go back to `src` (as hickory-server: not port 0, not an unspecified
/// or broadcast address).
pub(crate) fn answerable(src: SocketAddr) -> bool {
    let bad_ip = match src.ip() {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified(),
    };
    src.port() != 0 && !bad_ip
}

/// Serves TCP connections from `listener` until `shutdown`.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    timeout: Duration,
    state: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, src) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(tcp_connection(stream, src, timeout, state.clone(), shutdown.clone()));
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    timeout: Duration,
    state: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let (mut msg, mut out, mut frame) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let len = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, stream.read_u16()) => match r {
                Ok(Ok(len)) => usize::from(len),
                _ => return,
            },
        };
        msg.resize(len, 0);
        if !matches!(tokio::time::timeout(timeout, stream.read_exact(&mut msg)).await, Ok(Ok(_))) {
            return;
        }
        if !respond(&state, &msg, src, Transport::Tcp, &mut out) {
            continue;
        }
        frame.clear();
        frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
        frame.extend_from_slice(&out);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// A decoded query: what [`respond`] needs from the message.
struct Request<'m> {
    metadata: Metadata,
    /// The question section as received (echoed in the response, the client's case kept).
    question: &'m [u8],
    /// The questions' count and the first of them.
    count: u16,
    query: Option<Query>,
    edns: Option<Edns>,
}

impl<'m> Request<'m> {
    fn read(msg: &'m [u8], d: &mut BinDecoder<'m>, header: &Header) -> Result<Request<'m>, ProtoError> {
        let start = d.index();
        let mut query = None;
        for _ in 0..header.counts.queries {
            let q = Query::read(d)?;
            query.get_or_insert(q);
        }
        let question = &msg[start..d.index()];
        let op = header.metadata.op_code;
        Message::read_records(d, usize::from(header.counts.answers), false, op)?;
        Message::read_records(d, usize::from(header.counts.authorities), false, op)?;
        let (_, edns, _) = Message::read_records(d, usize::from(header.counts.additionals), true, op)?;
        Ok(Request { metadata: header.metadata, question, count: header.counts.queries, query, edns })
    }
}

/// Answers the DNS message `msg` from `src` into `out` (cleared first). False: send nothing
/// (shorter than a header, a response rather than a query, or dropped by rate limiting).
pub(crate) fn respond(
    state: &Shared,
    msg: &[u8],
    src: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let mut d = BinDecoder::new(msg);
    let Ok(header) = Header::read(&mut d) else { return false };
    if header.metadata.message_type == MessageType::Response {
        // Never answer a response (reflection).
        return false;
    }
    let request = match Request::read(msg, &mut d, &header) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, %src, "undecodable query");
            let mut meta = Metadata::response_from_request(&header.metadata);
            meta.response_code = ResponseCode::FormErr;
            let q = Question { bytes: &[], count: 0, first: false };
            encode(out, &meta, q, Records::default(), None, 512);
            return true;
        }
    };
    let view = state.view.load();
    let mut meta = Metadata::response_from_request(&request.metadata);
    let req_edns = request.edns.as_ref();
    let mut edns = req_edns.map(|e| {
        let mut r = Edns::new();
        r.set_max_payload(e.max_payload().clamp(512, view.max_udp_payload));
        r
    });
    let max = match (transport, &edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, Some(e)) => e.max_payload(),
        // RFC 1035 §4.2.1: without EDNS a UDP message is at most 512 bytes.
        (Transport::Udp, None) => 512,
    };
    let question = Question { bytes: request.question, count: request.count, first: request.query.is_some() };
    let mut refuse = |code: ResponseCode| {
        meta.response_code = code;
        encode(out, &meta, question, Records::default(), edns.as_ref(), max);
        true
    };
    let query = match &request.query {
        Some(q) if request.count == 1 && request.metadata.message_type == MessageType::Query => q,
        _ => return refuse(ResponseCode::FormErr),
    };
    if request.metadata.op_code != OpCode::Query {
        return refuse(ResponseCode::NotImp);
    }
    if req_edns.is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: we speak EDNS version 0 only. The high bits of the extended
        // response code travel in the OPT record, which the encoder fills from the header.
        return refuse(ResponseCode::BADVERS);
    }
    let ecs = match req_edns.and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => match IpNet::new(s.addr(), s.source_prefix()) {
            Ok(n) => Some((n, *s)),
            // RFC 7871 §7.1.1: a source prefix longer than the address is a FORMERR.
            Err(_) => return refuse(ResponseCode::FormErr),
        },
        _ => None,
    };
    let qname = LowerName::from(query.name());
    let qtype = query.query_type();
    let client = ClientInfo { addr: src.ip(), ecs: ecs.map(|(n, _)| n), roll: rand::random() };
    let a = reply(&view, &qname, qtype, &client, state.health.as_ref(), false);
    meta.authoritative = a.authoritative;
    meta.response_code = match a.rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::Refused => ResponseCode::Refused,
    };
    if let (Some(e), Some((_, mut subnet)), Some(scope)) = (edns.as_mut(), ecs, a.ecs_scope) {
        subnet.set_scope_prefix(scope);
        e.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    if transport == Transport::Udp {
        // Which response this is, for the limiter's buckets (keyed by the standard hasher).
        let response = FxBuildHasher.hash_one((&qname, qtype, a.rcode as u8));
        match state.rrl().check(client.addr, response, Instant::now()) {
            RrlDecision::Send => {}
            RrlDecision::Drop => return false,
            RrlDecision::Slip => {
                meta.truncation = true;
                encode(out, &meta, question, Records::default(), edns.as_ref(), max);
                return true;
            }
        }
    }
    if !(copyable(&a, question.bytes, &qname)
        && encode_copied(out, &meta, question, &a.answers, edns.as_ref(), max))
    {
        let records = Records { answers: &a.answers, authority: a.authority, additional: a.additional };
        encode(out, &meta, question, records, edns.as_ref(), max);
    }
    true
}

/// Whether the answer can be put together from its records' pre-encoded bytes: only answers
/// owned by the question's name, and a question encoded plainly (its labels where a plain
/// encoding of the name puts them, which the pre-encoded compression pointers assume).
fn copyable(a: &Reply<'_>, question: &[u8], qname: &LowerName) -> bool {
    let plain = qname.iter().map(|l| l.len() + 1).sum::<usize>() + 1 + 4;
    !a.chased && a.authority.is_none() && a.additional.is_empty() && question.len() == plain
}

/// The response from pre-encoded pieces (see the module documentation). False when a record
/// has no pre-encoded bytes or the response would exceed `max`: then nothing is decided yet
/// and [`encode`] must be used.
fn encode_copied(
    out: &mut Vec<u8>,
    meta: &Metadata,
    q: Question<'_>,
    answers: &[&Rr],
    edns: Option<&Edns>,
    max: u16,
) -> bool {
    let Ok(count) = u16::try_from(answers.len()) else { return false };
    out.clear();
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(max);
    let counts = HeaderCounts {
        queries: q.count,
        answers: count,
        authorities: 0,
        additionals: u16::from(edns.is_some()),
    };
    let done = (|| {
        Header { metadata: *meta, counts }.emit(&mut encoder)?;
        encoder.emit_vec(q.bytes)?;
        for r in answers {
            if r.wire.is_empty() {
                return Err(ProtoError::from("no pre-encoded record"));
            }
            encoder.emit_vec(&r.wire)?;
        }
        if let Some(e) = edns {
            // As emit_message_parts: the high bits of the response code travel in the OPT.
            let mut e = e.clone();
            e.set_rcode_high(meta.response_code.high());
            Record::from(&e).emit(&mut encoder)?;
        }
        Ok::<_, ProtoError>(())
    })();
    done.is_ok()
}

/// The question section as received, emitted as is (as hickory-server does).
#[derive(Clone, Copy)]
struct Question<'m> {
    bytes: &'m [u8],
    count: u16,
    /// Whether it holds a decoded query (its name then seeds name compression).
    first: bool,
}

impl EmitAndCount for Question<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let start = encoder.offset();
        encoder.emit_vec(self.bytes)?;
        if self.first && matches!(encoder.name_encoding(), NameEncoding::Compressed) {
            // The name only (not the type and class after it), so that the answers' names
            // compress against it (hickory-server offers the whole question, which no name
            // ever matches).
            encoder.store_label_pointer(start, start + self.bytes.len().saturating_sub(4));
        }
        Ok(usize::from(self.count))
    }
}

#[derive(Default)]
struct Records<'a> {
    answers: &'a [&'a Rr],
    authority: Option<&'a Record>,
    additional: &'a [Rr],
}

/// Encodes a response into `out` with hickory-proto, at most `max` bytes: records that do not
/// fit are left out and the TC flag set (the client retries over TCP). An encoding failure
/// answers SERVFAIL.
fn encode(
    out: &mut Vec<u8>,
    meta: &Metadata,
    mut q: Question<'_>,
    r: Records<'_>,
    edns: Option<&Edns>,
    max: u16,
) {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(max);
    let done = emit_message_parts(
        meta,
        &mut q,
        &mut r.answers.iter().map(|r| &r.record),
        &mut r.authority.into_iter(),
        &mut r.additional.iter().map(|r| &r.record),
        edns,
        None,
        &mut encoder,
    );
    if let Err(e) = done {
        tracing::warn!(error = %e, "cannot encode a response; answering SERVFAIL");
        out.clear();
        let mut metadata = Metadata::new(meta.id, MessageType::Response, OpCode::Query);
        metadata.response_code = ResponseCode::ServFail;
        let header = Header { metadata, counts: HeaderCounts::default() };
        let _ = header.emit(&mut BinEncoder::new(out));
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::AllHealthy;
    use crate::view::View;

    const EXAMPLE: &str = include_str!("../../../examples/dns.yaml");

    #[test]
    fn answers_from_pre_encoded_records_are_the_message_the_encoder_writes() {
        let view = View::build(&meridian_model::parse_global(EXAMPLE).unwrap(), 7).unwrap();
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let asked = [
            ("api.example.com.", RecordType::A),
            ("API.Example.COM.", RecordType::TXT),
            ("www.api.example.com.", RecordType::CNAME),
            ("multi.api.example.com.", RecordType::A),
            ("latency.api.example.com.", RecordType::AAAA),
            ("api.example.com.", RecordType::SOA),
            ("elsewhere.example.", RecordType::A),
        ];
        for (name, t) in asked {
            for edns in [None, Some(&edns)] {
                let query = Query::query(Name::from_ascii(name).unwrap(), t);
                let mut bytes = Vec::new();
                query.emit(&mut BinEncoder::new(&mut bytes)).unwrap();
                let qname = LowerName::from(query.name());
                let client = ClientInfo { addr: "192.0.2.1".parse().unwrap(), ecs: None, roll: 3 };
                let a = reply(&view, &qname, t, &client, &AllHealthy, false);
                assert!(copyable(&a, &bytes, &qname), "{name} {t}");
                let mut meta =
                    Metadata::response_from_request(&Metadata::new(7, MessageType::Query, OpCode::Query));
                meta.authoritative = a.authoritative;
                let q = Question { bytes: &bytes, count: 1, first: true };
                let (mut copied, mut encoded) = (Vec::new(), Vec::new());
                assert!(encode_copied(&mut copied, &meta, q, &a.answers, edns, 1232), "{name} {t}");
                let records = Records { answers: &a.answers, authority: None, additional: &[] };
                encode(&mut encoded, &meta, q, records, edns, 1232);
                // The same message; the pre-encoded one compresses at least as well (its names
                // point to every suffix of the question).
                let (x, y) = (Message::from_vec(&copied).unwrap(), Message::from_vec(&encoded).unwrap());
                assert_eq!(x, y, "{name} {t} edns {}", edns.is_some());
                assert_eq!(x.queries[0].name().to_string(), name, "the question as asked");
                assert!(copied.len() <= encoded.len(), "{name} {t}");
                // Too big for the client: left to the encoder, which truncates.
                assert!(a.answers.is_empty() || !encode_copied(&mut copied, &meta, q, &a.answers, edns, 40));
            }
        }
        let chased = reply(
            &view,
            &LowerName::from(Name::from_str("www.api.example.com.").unwrap()),
            RecordType::A,
            &ClientInfo { addr: "192.0.2.1".parse().unwrap(), ecs: None, roll: 0 },
            &AllHealthy,
            false,
        );
        assert!(chased.chased && chased.answers.len() > 1, "a followed CNAME is encoded as usual");
    }
}

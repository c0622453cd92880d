//! The wire edge cases of the director's own UDP loop and TCP connections: messages built and
//! read with hickory-proto over raw sockets (RFC 1035 §4.1 header and question, §4.2.2 TCP
//! framing; RFC 6891 EDNS).

use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{config, start};

/// A bound against a hang, not a measurement.
const HANG: Duration = Duration::from_secs(10);

fn query(id: u16, name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    // from_ascii keeps the case (parsing as UTF-8 applies IDNA, which lowercases).
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

async fn udp_bytes(port: u16, bytes: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(bytes, ("127.0.0.1", port)).await.unwrap();
    let mut buf = vec![0; 65535];
    let (n, _) = tokio::time::timeout(HANG, s.recv_from(&mut buf)).await.expect("an answer").unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn udp(port: u16, m: &Message) -> Message {
    udp_bytes(port, &m.to_vec().unwrap()).await
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_header_and_question_come_back_as_sent() {
    let d = start(&config()).await;
    let r = udp(d.port(), &query(4242, "API.Example.COM.", RecordType::A)).await;
    assert_eq!((r.metadata.id, r.metadata.message_type), (4242, MessageType::Response));
    assert!(r.metadata.authoritative && r.metadata.recursion_desired && !r.metadata.recursion_available);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.queries.len(), 1);
    assert_eq!(r.queries[0].name().to_string(), "API.Example.COM.", "the client's case is kept");
    assert_eq!(a_records(&r), ["127.0.1.1"]);
    assert!(r.edns.is_none(), "no EDNS asked, none answered");
}

#[tokio::test]
async fn malformed_and_unsupported_queries_get_the_right_error() {
    let d = start(&config()).await;
    let mut two = query(1, "api.example.com.", RecordType::A);
    two.add_query(Query::query("www.api.example.com.".parse().unwrap(), RecordType::A));
    let r = udp(d.port(), &two).await;
    assert_eq!((r.metadata.id, r.metadata.response_code), (1, ResponseCode::FormErr), "two questions");

    let mut notify = query(2, "api.example.com.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let r = udp(d.port(), &notify).await;
    assert_eq!((r.metadata.id, r.metadata.response_code), (2, ResponseCode::NotImp));

    // A question whose name runs past the end of the message.
    let cut = [0x00, 0x03, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'];
    let r = udp_bytes(d.port(), &cut).await;
    assert_eq!((r.metadata.id, r.metadata.response_code), (3, ResponseCode::FormErr));
    assert!(r.queries.is_empty());
}

#[tokio::test]
async fn edns_is_answered_with_our_payload_size_and_version_0_only() {
    let d = start(&config()).await;
    let mut q = query(5, "api.example.com.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns.clone());
    let r = udp(d.port(), &q).await;
    let e = r.edns.as_ref().expect("EDNS answered");
    assert_eq!((e.version(), e.max_payload()), (0, 1232), "clamped to dns.max_udp_payload");
    assert_eq!(a_records(&r), ["127.0.1.1"]);

    edns.set_version(1);
    q.set_edns(edns);
    let r = udp(d.port(), &q).await;
    // BADVERS and BADSIG share code 16 (RFC 6891, RFC 8945); hickory decodes it as BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert!(r.edns.is_some() && r.answers.is_empty());
}

#[tokio::test]
async fn tcp_answers_pipelined_queries_in_order_on_one_connection() {
    let d = start(&config()).await;
    let mut s = TcpStream::connect(("127.0.0.1", d.port())).await.unwrap();
    let mut out = Vec::new();
    for (id, name) in
        [(10, "api.example.com."), (11, "nothing.api.example.com."), (12, "big.api.example.com.")]
    {
        let t = if id == 12 { RecordType::TXT } else { RecordType::A };
        let bytes = query(id, name, t).to_vec().unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    s.write_all(&out).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let len = tokio::time::timeout(HANG, s.read_u16()).await.expect("an answer").unwrap();
        let mut buf = vec![0; usize::from(len)];
        s.read_exact(&mut buf).await.unwrap();
        answers.push(Message::from_vec(&buf).unwrap());
    }
    assert_eq!(answers.iter().map(|m| m.metadata.id).collect::<Vec<_>>(), [10, 11, 12]);
    assert_eq!(a_records(&answers[0]), ["127.0.1.1"]);
    assert_eq!(answers[1].metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(answers[1].authorities.len(), 1, "the SOA of a negative answer");
    assert_eq!(answers[2].answers.len(), 20, "over TCP nothing is truncated");
    assert!(!answers[2].metadata.truncation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_several_sockets_is_answered_once_each_with_the_right_id() {
    // 200 queries sent without waiting, so they queue on the director's socket and are read
    // and answered in batches (recvmmsg/sendmmsg on Linux) by two receive loops.
    const SOCKETS: u16 = 5;
    const EACH: u16 = 40;
    let d = start(&config()).await;
    let asked = [
        ("api.example.com.", RecordType::A, ResponseCode::NoError),
        ("api.example.com.", RecordType::TXT, ResponseCode::NoError),
        ("multi.api.example.com.", RecordType::A, ResponseCode::NoError),
        ("nothing.api.example.com.", RecordType::A, ResponseCode::NXDomain),
    ];
    let mut sockets = Vec::new();
    for s in 0..SOCKETS {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(("127.0.0.1", d.port())).await.unwrap();
        sockets.push((s, sock));
    }
    for i in 0..EACH {
        for (s, sock) in &sockets {
            let id = s * 1000 + i;
            let (name, t, _) = asked[usize::from(id % 4)];
            sock.send(&query(id, name, t).to_vec().unwrap()).await.unwrap();
        }
    }
    let mut buf = vec![0; 65535];
    for (s, sock) in &sockets {
        let mut seen = vec![false; usize::from(EACH)];
        for _ in 0..EACH {
            let n =
                tokio::time::timeout(HANG, sock.recv(&mut buf)).await.expect("every query answered").unwrap();
            let r = Message::from_vec(&buf[..n]).unwrap();
            let id = r.metadata.id;
            assert_eq!(id / 1000, *s, "an answer to another socket's query");
            let i = usize::from(id % 1000);
            assert!(i < seen.len() && !seen[i], "id {id} answered twice or never asked");
            seen[i] = true;
            let (name, t, code) = asked[usize::from(id % 4)];
            assert_eq!(r.queries[0].name().to_string(), name, "id {id}");
            assert_eq!((r.queries[0].query_type(), r.metadata.response_code), (t, code), "id {id}");
            assert!(code == ResponseCode::NXDomain || !r.answers.is_empty(), "id {id}");
        }
    }
    // Nothing more: each query was answered exactly once.
    for (_, sock) in &sockets {
        let extra = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await;
        assert!(extra.is_err(), "an extra answer");
    }
}

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue, StatusCode, Version};

use super::{ForwardCtx, TrustedProxies, prepare_request, prepare_response, put_token_or_quoted};

fn trusted() -> TrustedProxies {
    TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into(), "fd00::/8".into()]).expect("valid list")
}

fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

fn all<'a>(h: &'a HeaderMap, n: &str) -> Vec<&'a str> {
    h.get_all(n).iter().map(|v| v.to_str().unwrap_or("?")).collect()
}

fn one<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).map(|v| v.to_str().unwrap_or("?"))
}

const VIA: HeaderValue = HeaderValue::from_static("1.1 meridian");

const RID: HeaderValue = HeaderValue::from_static("rid-1");

/// Runs `prepare_request` from `peer` and returns the headers with this hop's fields applied,
/// and the believed client. Checks on the way that the fields written as HTTP/1.1 lines are
/// the ones applied to the map.
fn run(peer: &str, tls: bool, mut h: HeaderMap, upgrade: bool) -> (HeaderMap, IpAddr) {
    let t = trusted();
    let ctx = ForwardCtx { peer: peer.parse::<SocketAddr>().expect("peer"), tls, trusted: &t, via: &VIA };
    let (ip, hop) = prepare_request(&mut h, Version::HTTP_11, &ctx, upgrade, &RID);
    let mut written = Vec::new();
    hop.write(&mut written);
    let mut added = HeaderMap::new();
    hop.apply(&mut added);
    let mut lines = Vec::new();
    for (n, v) in &added {
        crate::wire::put_field(&mut lines, n, v);
    }
    assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&lines));
    hop.apply(&mut h);
    (h, ip)
}

#[test]
fn trusted_proxies_parse_and_contain() {
    let t = trusted();
    assert!(t.contains("10.1.2.3".parse().expect("ip")));
    assert!(t.contains("192.0.2.7".parse().expect("ip")));
    assert!(!t.contains("192.0.2.8".parse().expect("ip")));
    assert!(t.contains("fd12::1".parse().expect("ip")));
    assert!(t.contains("::ffff:10.0.0.1".parse().expect("ip")), "IPv4-mapped counts as IPv4");
    assert!(!t.contains("2001:db8::1".parse().expect("ip")));
    assert!(TrustedProxies::parse(&[]).expect("empty").is_empty());
    let errs =
        TrustedProxies::parse(&["10.0.0.0/8".into(), "nope".into(), "10.0.0.0/33".into()]).expect_err("bad");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["trusted_proxies[1]", "trusted_proxies[2]"]);
}

#[test]
fn untrusted_peer_headers_are_replaced() {
    let h = map(&[
        ("host", "api.example.com"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.com"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    let (h, ip) = run("203.0.113.5:4000", false, h, false);
    assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().expect("ip"));
    assert_eq!(all(&h, "x-forwarded-for"), ["203.0.113.5"]);
    assert_eq!(one(&h, "x-forwarded-proto"), Some("http"));
    assert_eq!(one(&h, "x-forwarded-host"), Some("api.example.com"));
    assert_eq!(all(&h, "forwarded"), ["for=203.0.113.5;proto=http;host=api.example.com"]);
    assert_eq!(all(&h, "via"), ["1.1 meridian"]);
}

#[test]
fn trusted_peer_chain_is_appended_and_client_is_rightmost_untrusted() {
    let h = map(&[
        ("host", "api.example.com:8443"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
        ("x-forwarded-for", "10.0.0.3"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example.com"),
        ("forwarded", "for=198.51.100.1;proto=https"),
        ("via", "1.1 edge"),
    ]);
    let (h, ip) = run("10.0.0.2:5000", false, h, false);
    assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().expect("ip"));
    assert_eq!(all(&h, "x-forwarded-for"), ["198.51.100.1, 203.0.113.9, 10.0.0.3, 10.0.0.2"]);
    assert_eq!(one(&h, "x-forwarded-proto"), Some("https"), "believed from a trusted peer");
    assert_eq!(one(&h, "x-forwarded-host"), Some("public.example.com"));
    assert_eq!(
        all(&h, "forwarded"),
        ["for=198.51.100.1;proto=https, for=10.0.0.2;proto=http;host=\"api.example.com:8443\""]
    );
    assert_eq!(all(&h, "via"), ["1.1 edge", "1.1 meridian"]);
}

#[test]
fn trusted_peer_without_headers_sets_them() {
    let (h, ip) = run("10.0.0.2:5000", true, map(&[]), false);
    assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().expect("ip"));
    assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.2"]);
    assert_eq!(one(&h, "x-forwarded-proto"), Some("https"));
    assert!(!h.contains_key("x-forwarded-host"), "no Host to report");
    assert_eq!(all(&h, "forwarded"), ["for=10.0.0.2;proto=https"]);
}

#[test]
fn client_walk_skips_trusted_hops_and_stops_at_garbage() {
    let (_, ip) = run("10.0.0.2:1", false, map(&[("x-forwarded-for", "10.9.9.9, 192.0.2.7")]), false);
    assert_eq!(ip, "10.9.9.9".parse::<IpAddr>().expect("ip"), "all trusted: the leftmost");
    let (_, ip) = run("10.0.0.2:1", false, map(&[("x-forwarded-for", "1.1.1.1, unknown, 10.0.0.9")]), false);
    assert_eq!(ip, "10.0.0.9".parse::<IpAddr>().expect("ip"), "garbage: the last trusted hop");
    let (_, ip) =
        run("10.0.0.2:1", false, map(&[("x-forwarded-for", "[2001:db8::5]:443, 1.2.3.4:80")]), false);
    assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().expect("ip"), "ports are ignored");
    let (_, ip) = run("10.0.0.2:1", false, map(&[("x-forwarded-for", "2001:db8::5")]), false);
    assert_eq!(ip, "2001:db8::5".parse::<IpAddr>().expect("ip"));
}

#[test]
fn ipv6_is_quoted_in_forwarded() {
    let (h, ip) = run("[2001:db8::1]:443", true, map(&[("host", "a.com")]), false);
    assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().expect("ip"));
    assert_eq!(all(&h, "forwarded"), ["for=\"[2001:db8::1]\";proto=https;host=a.com"]);
    assert_eq!(all(&h, "x-forwarded-for"), ["2001:db8::1"]);
    let (h, ip) = run("[::ffff:203.0.113.5]:443", false, map(&[]), false);
    assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().expect("ip"), "IPv4-mapped peers are IPv4");
    assert_eq!(all(&h, "forwarded"), ["for=203.0.113.5;proto=http"]);
}

#[test]
fn hop_by_hop_and_connection_listed_headers_are_removed() {
    let h = map(&[
        ("connection", "keep-alive, X-Secret"),
        ("connection", "x-other, host, upgrade"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("trailer", "x-checksum"),
        ("te", "gzip"),
        ("x-secret", "s"),
        ("x-other", "o"),
        ("proxy-authorization", "Basic abc"),
        ("host", "a.com"),
        ("x-keep", "k"),
    ]);
    let (h, _) = run("203.0.113.5:1", false, h, false);
    for gone in
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "trailer", "te"]
    {
        assert!(!h.contains_key(gone), "{gone} must be removed");
    }
    assert!(!h.contains_key("x-secret") && !h.contains_key("x-other"));
    assert_eq!(one(&h, "proxy-authorization"), Some("Basic abc"));
    assert_eq!(one(&h, "host"), Some("a.com"), "Host survives being named in Connection");
    assert_eq!(one(&h, "x-keep"), Some("k"));
}

#[test]
fn te_trailers_is_kept() {
    for te in ["trailers", "gzip, trailers", "Trailers;q=1"] {
        let mut h = map(&[("connection", "te")]);
        h.insert("te", HeaderValue::from_static(te));
        let (h, _) = run("203.0.113.5:1", false, h, false);
        assert_eq!(all(&h, "te"), ["trailers"], "from {te:?}");
    }
}

#[test]
fn upgrade_keeps_upgrade_and_sets_connection_upgrade() {
    let h = map(&[("connection", "Upgrade, x-hop"), ("upgrade", "websocket"), ("x-hop", "1")]);
    let (h, _) = run("203.0.113.5:1", false, h, true);
    assert_eq!(one(&h, "upgrade"), Some("websocket"));
    assert_eq!(all(&h, "connection"), ["upgrade"]);
    assert!(!h.contains_key("x-hop"));

    // Upgrades are HTTP/1.1 only.
    let t = trusted();
    let ctx = ForwardCtx { peer: "203.0.113.5:1".parse().expect("peer"), tls: false, trusted: &t, via: &VIA };
    let mut h2 = map(&[("upgrade", "websocket")]);
    prepare_request(&mut h2, Version::HTTP_2, &ctx, true, &RID);
    assert!(!h2.contains_key("upgrade") && !h2.contains_key("connection"));
}

/// Runs `prepare_response` on a response with the fields `h` and returns its fields.
fn respond(h: HeaderMap, status: StatusCode) -> HeaderMap {
    let mut r = http::Response::new(crate::body::GwBody::Empty);
    *r.status_mut() = status;
    *r.headers_mut() = h;
    prepare_response(&mut r, &VIA);
    r.into_parts().0.headers
}

#[test]
fn response_hop_by_hop_removed_and_via_appended() {
    let h = map(&[
        ("connection", "close, x-hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("x-hop", "1"),
        ("content-type", "text/plain"),
        ("via", "1.0 backend"),
    ]);
    let h = respond(h, StatusCode::OK);
    for gone in ["connection", "keep-alive", "transfer-encoding", "upgrade", "x-hop"] {
        assert!(!h.contains_key(gone), "{gone} must be removed");
    }
    assert_eq!(one(&h, "content-type"), Some("text/plain"));
    assert_eq!(all(&h, "via"), ["1.0 backend", "1.1 meridian"]);
}

#[test]
fn switching_protocols_keeps_upgrade() {
    let h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-accept", "x")]);
    let h = respond(h, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(one(&h, "upgrade"), Some("websocket"));
    assert_eq!(all(&h, "connection"), ["upgrade"]);
    assert_eq!(one(&h, "sec-websocket-accept"), Some("x"));
}

#[test]
fn forwarded_host_with_quotes_is_escaped() {
    let (h, _) = run("203.0.113.5:1", false, map(&[("host", "a\"b")]), false);
    assert_eq!(all(&h, "forwarded"), ["for=203.0.113.5;proto=http;host=\"a\\\"b\""]);
}

#[test]
fn peer_addresses_are_written_without_formatting_errors() {
    for ip in ["0.0.0.0", "9.10.99.100", "127.0.0.1", "255.255.255.255", "10.200.3.45", "2001:db8::1"] {
        let (h, _) =
            run(&std::net::SocketAddr::new(ip.parse().unwrap(), 1).to_string(), false, map(&[]), false);
        assert_eq!(all(&h, "x-forwarded-for"), [ip]);
    }
    let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
    let (h, _) = run(&format!("[{ip}]:1"), false, map(&[]), false);
    assert_eq!(all(&h, "forwarded"), [format!("for=\"[{ip}]\";proto=http")]);
}

#[test]
fn long_trusted_chains_are_extended_intact() {
    let chain = vec!["203.0.113.77"; 40].join(", ");
    let h = map(&[]);
    let mut h = h;
    h.append("x-forwarded-for", HeaderValue::from_str(&chain).unwrap());
    let (h, _) = run("10.0.0.2:1", false, h, false);
    assert_eq!(all(&h, "x-forwarded-for"), [format!("{chain}, 10.0.0.2")]);
}

#[test]
fn fields_named_in_connection_are_gone_before_this_hop_reads_them() {
    let h = map(&[
        ("connection", "x-forwarded-for, forwarded"),
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
    ]);
    let (h, ip) = run("10.0.0.2:1", false, h, false);
    assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.2"]);
    assert_eq!(all(&h, "forwarded"), ["for=10.0.0.2;proto=http"]);
}

#[test]
fn the_clients_own_request_id_and_forwarding_fields_are_replaced_not_repeated() {
    let h = map(&[
        ("host", "a.com"),
        ("x-request-id", "from-client"),
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.com"),
        ("via", "1.1 edge"),
    ]);
    let (h, _) = run("203.0.113.5:1", false, h, false);
    assert_eq!(all(&h, "x-request-id"), ["rid-1"]);
    assert_eq!(all(&h, "x-forwarded-for"), ["203.0.113.5"]);
    assert_eq!(all(&h, "forwarded"), ["for=203.0.113.5;proto=http;host=a.com"]);
    assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
    assert_eq!(all(&h, "x-forwarded-host"), ["a.com"]);
    assert_eq!(all(&h, "via"), ["1.1 edge", "1.1 meridian"]);
    // Without a Host there is no X-Forwarded-Host, and the client's goes.
    let (h, _) = run("203.0.113.5:1", false, map(&[("x-forwarded-host", "evil.com")]), false);
    assert!(!h.contains_key("x-forwarded-host"));
}

#[test]
fn hop_field_lines_start_with_their_names() {
    for (name, start) in super::HOP_NAMES.iter().zip(super::HOP_LINE_STARTS) {
        assert_eq!(start, format!("{}: ", name.as_str()).as_bytes());
    }
}

#[test]
fn hop_fields_name_what_a_service_may_hash_on() {
    assert!(super::HopFields::sets("X-Forwarded-For"));
    assert!(super::HopFields::sets("x-request-id"));
    assert!(!super::HopFields::sets("x-user"));
}

#[test]
fn forwarded_values_are_tokens_or_quoted_strings() {
    let put = |v: &[u8]| {
        let mut out = Vec::new();
        put_token_or_quoted(&mut out, v);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(put(b"example.com"), "example.com");
    assert_eq!(put(b"127.0.0.1:8080"), "\"127.0.0.1:8080\"");
    assert_eq!(put(b""), "\"\"");
    assert_eq!(put(br#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(put(br#"""#), r#""\"""#);
}

//! Basic proxying, routing, proxy headers, errors and policies.

use meridian_testkit::TestUpstream;
use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn proxies_http1_with_proxy_headers_and_request_id() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let r = client()
        .get(gw.url("/hello?x=1"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "must not pass")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    assert_eq!(r.headers()["via"], "1.1 meridian");
    assert_eq!(r.headers()["x-meridian-region"], "local");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["query"], "x=1");
    let h = &v["headers"];
    // The peer (127.0.0.1) is not a trusted proxy: its X-Forwarded-For is replaced.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], rid.as_str());
    assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert!(h.get("x-secret").is_none(), "headers named in Connection are hop-by-hop: {h}");
    assert!(h["forwarded"].as_str().unwrap().contains("for=127.0.0.1"));
    assert!(h["via"].as_str().unwrap().contains("meridian"));
}

#[tokio::test]
async fn trusted_proxies_extend_the_forwarded_chain_and_request_ids_propagate() {
    let up = TestUpstream::start("a").await;
    let gw =
        Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), "", "trusted_proxies: [127.0.0.0/8]\n").await;
    let r = client()
        .get(gw.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(v["headers"]["x-request-id"], "client-chosen-id");
}

#[tokio::test]
async fn no_route_is_a_json_404_with_the_request_id() {
    let up = TestUpstream::start("a").await;
    let routes = "routes:\n  - name: api\n    match: { hosts: [api.test], path: { prefix: /api } }\n    service: svc\n";
    let gw = Gw::start(&global(&[up.addr()], "", routes)).await;
    let r = client().get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 404, "wrong host");
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "NotFound");
    assert_eq!(v["request_id"], rid.as_str());
    assert!(v["message"].as_str().unwrap().contains("route"));
    let ok = client().get(gw.url("/api/x")).header("host", "api.test").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn routes_follow_precedence_and_strip_prefix() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let yaml = format!(
        "regions:\n  - name: local\n\
         services:\n  - name: svc\n    endpoints: {{ local: [{{ address: {a} }}] }}\n\
         \x20 - name: users\n    endpoints: {{ local: [{{ address: {b} }}] }}\n\
         routes:\n\
         \x20 - name: all\n    match: {{ path: {{ prefix: / }} }}\n    service: svc\n\
         \x20 - name: user\n    match: {{ path: {{ template: \"/users/{{id}}\" }}, methods: [GET] }}\n    service: users\n\
         \x20 - name: v2\n    match: {{ path: {{ prefix: /v2 }} }}\n    service: users\n    strip_prefix: true\n",
        a = a.addr(),
        b = b.addr()
    );
    let gw = Gw::start(&yaml).await;
    let c = client();
    let get = |p: &'static str| c.get(gw.url(p)).send();
    let v: Value = get("/users/7").await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "b");
    let v: Value = c.post(gw.url("/users/7")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "a", "POST is not matched by the GET-only template route");
    let v: Value = get("/v2/orders?q=1").await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "b");
    assert_eq!(v["path"], "/orders");
    assert_eq!(v["query"], "q=1");
    let v: Value = get("/v2x").await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "a", "prefixes match at segment boundaries");
}

#[tokio::test]
async fn header_policy_and_cors_run_in_their_phases() {
    let up = TestUpstream::start("a").await;
    let rest = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n    policies: [cors, hdrs]\n\
        policies:\n\
        \x20 - name: hdrs\n    headers:\n      request: { set: { x-added: yes }, remove: [x-drop] }\n      response: { add: { x-served-by: meridian }, remove: [x-upstream] }\n\
        \x20 - name: cors\n    cors: { allow_origins: [\"https://app.test\"], allow_methods: [GET, PUT] }\n";
    let gw = Gw::start(&global(&[up.addr()], "", rest)).await;
    let c = client();
    let r =
        c.get(gw.url("/x")).header("x-drop", "1").header("origin", "https://app.test").send().await.unwrap();
    assert_eq!(r.headers()["x-served-by"], "meridian");
    assert!(r.headers().get("x-upstream").is_none());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.test");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-added"], "yes");
    assert!(v["headers"].get("x-drop").is_none());

    let before = up.requests();
    let pre = c
        .request(reqwest::Method::OPTIONS, gw.url("/x"))
        .header("origin", "https://app.test")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://app.test");
    assert!(pre.headers()["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    let bad = c
        .request(reqwest::Method::OPTIONS, gw.url("/x"))
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["code"], "AccessDenied");
    assert_eq!(up.requests(), before, "preflights are answered by the gateway");
}

#[tokio::test]
async fn round_robin_spreads_and_consistent_hash_sticks() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let gw = Gw::start(&global(&[a.addr(), b.addr()], "", CATCH_ALL)).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(a.requests(), 10);
    assert_eq!(b.requests(), 10);
    assert!(a.connections() <= 2, "keep-alive connections are pooled: {}", a.connections());

    let sticky = "    load_balancing: { policy: consistent_hash, hash_on: { header: x-user } }\n";
    let gw2 = Gw::start(&global(&[a.addr(), b.addr()], sticky, CATCH_ALL)).await;
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        let first: Value =
            c.get(gw2.url("/")).header("x-user", user).send().await.unwrap().json().await.unwrap();
        for _ in 0..5 {
            let v: Value =
                c.get(gw2.url("/")).header("x-user", user).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["upstream"], first["upstream"], "user {user} moved");
        }
    }
}

#[tokio::test]
async fn endpoints_given_by_hostname_are_resolved() {
    let up = TestUpstream::start("a").await;
    let yaml = format!(
        "regions:\n  - name: local\nservices:\n  - name: svc\n    endpoints: {{ local: [{{ address: \"localhost:{}\" }}] }}\n{CATCH_ALL}",
        up.addr().port()
    );
    let gw = Gw::start(&yaml).await;
    let c = client();
    eventually("localhost resolves", std::time::Duration::from_secs(10), async || {
        c.get(gw.url("/")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_request() {
    let up = TestUpstream::start("a").await;
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("access.log");
    let top = format!("access_log: {{ enabled: true, path: {} }}\n", log.display());
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), "", &top).await;
    let c = client();
    let r = c.get(gw.url("/logged")).send().await.unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    let r404 = Gw::start_with(
        &global(
            &[up.addr()],
            "",
            "routes:\n  - name: only\n    match: { path: { exact: /only } }\n    service: svc\n",
        ),
        "",
        &top,
    )
    .await;
    assert_eq!(c.get(r404.url("/missing")).send().await.unwrap().status(), 404);
    let mut lines: Vec<Value> = Vec::new();
    eventually("log lines flushed", std::time::Duration::from_secs(10), async || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.iter().any(|l| l["request_id"] == rid.as_str()) && lines.iter().any(|l| l["status"] == 404)
    })
    .await;
    let miss = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(miss["route"], "-", "requests that match no route are logged too");
    let line = lines.iter().find(|l| l["request_id"] == rid.as_str()).unwrap();
    assert_eq!(line["route"], "all");
    assert_eq!(line["service"], "svc");
    assert_eq!(line["region"], "local");
    assert_eq!(line["status"], 200);
    assert_eq!(line["endpoint"], up.addr().to_string());
    assert_eq!(line["bytes_sent"], body.len() as u64);
    assert_eq!(line["complete"], true);
    assert!(line["total_ms"].as_f64().unwrap() >= line["headers_ms"].as_f64().unwrap());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_request_target_authority_wins_over_a_conflicting_host_header() {
    let up = TestUpstream::start("a").await;
    let routes = "routes:\n  - name: public\n    match: { hosts: [public.test] }\n    service: svc\n";
    let gw = Gw::start(&global(&[up.addr()], "", routes)).await;
    let req = "GET http://public.test/x HTTP/1.1\r\nHost: admin.internal\r\nConnection: close\r\n\r\n";
    let (resp, _) = raw(gw.addr(), req.as_bytes(), std::time::Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.last_request_headers().unwrap();
    assert_eq!(seen["host"], "public.test");
}

#[tokio::test]
async fn cookie_stickiness_sets_a_cookie_and_holds_the_client() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let sticky = "    load_balancing: { policy: consistent_hash, hash_on: { cookie: mstick } }\n";
    let gw = Gw::start(&global(&[a.addr(), b.addr()], sticky, CATCH_ALL)).await;
    let c = client();
    for _ in 0..5 {
        let r = c.get(gw.url("/")).send().await.unwrap();
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("mstick="), "{cookie}");
        let first: Value = r.json().await.unwrap();
        for _ in 0..5 {
            let r = c.get(gw.url("/")).header("cookie", &cookie).send().await.unwrap();
            assert!(r.headers().get("set-cookie").is_none(), "a client with the cookie keeps it");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["upstream"], first["upstream"]);
        }
    }
}

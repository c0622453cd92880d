use http::{HeaderValue, Method, Request, Response, StatusCode, request, response};
use meridian_model::{Policy, Route};
use serde_json::json;

use super::{Chain, Flow, RequestFacts};

fn policies() -> Vec<Policy> {
    serde_json::from_value(json!([
        { "name": "cors", "cors": {
            "allow_origins": ["https://app.example.com"],
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["content-type", "x-token"],
            "expose_headers": ["x-trace"],
            "allow_credentials": true,
            "max_age": "10m" } },
        { "name": "cors-any", "cors": { "allow_origins": ["*"] } },
        { "name": "hdr", "headers": {
            "request": { "set": { "x-gw": "1" }, "remove": ["x-internal"] },
            "response": { "set": { "access-control-allow-origin": "https://evil", "x-a": "first" } } } },
        { "name": "hdr2", "headers": { "response": { "set": { "x-a": "second" } } } },
        { "name": "empty-headers", "headers": {} },
        { "name": "nothing" },
        { "name": "bad-cors", "cors": { "allow_origins": ["*"], "allow_credentials": true } }
    ]))
    .expect("valid policies json")
}

fn chain(names: &[&str]) -> Chain {
    let route: Route =
        serde_json::from_value(json!({ "name": "r", "service": "s", "policies": names })).expect("route");
    Chain::build(0, &route, &policies()).expect("chain builds")
}

fn build_err(names: &[&str]) -> Vec<String> {
    let route: Route =
        serde_json::from_value(json!({ "name": "r", "service": "s", "policies": names })).expect("route");
    Chain::build(4, &route, &policies()).expect_err("must fail").iter().map(|e| e.to_string()).collect()
}

fn req(method: Method, headers: &[(&'static str, &'static str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri("/x");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).expect("request").into_parts().0
}

fn resp() -> response::Parts {
    Response::builder().status(200).body(()).expect("response").into_parts().0
}

fn hv<'a>(h: &'a http::HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n).map(|v| v.to_str().unwrap_or("?"))
}

const APP: (&str, &str) = ("origin", "https://app.example.com");
const EVIL: (&str, &str) = ("origin", "https://evil.example.com");
const ACRM: (&str, &str) = ("access-control-request-method", "POST");

#[test]
fn empty_chains() {
    assert!(chain(&[]).is_empty());
    assert!(chain(&["empty-headers"]).is_empty());
    assert!(!chain(&["hdr"]).is_empty());
    assert!(!chain(&["cors-any"]).is_empty());
    let mut r = req(Method::GET, &[]);
    assert!(matches!(chain(&[]).on_request(&mut r, &mut RequestFacts::default(), "rid"), Flow::Continue));
}

#[test]
fn preflight_from_allowed_origin_is_answered_204() {
    let c = chain(&["hdr", "cors"]);
    let mut r = req(Method::OPTIONS, &[APP, ACRM, ("x-internal", "1")]);
    let Flow::Respond(resp) = c.on_request(&mut r, &mut RequestFacts::default(), "rid") else {
        panic!("answered")
    };
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(hv(h, "access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(hv(h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(hv(h, "access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(hv(h, "access-control-allow-headers"), Some("content-type, x-token"));
    assert_eq!(hv(h, "access-control-max-age"), Some("600"));
    assert_eq!(hv(h, "vary"), Some("Origin"));
    assert!(resp.body().is_empty());
    assert!(r.headers.contains_key("x-internal"), "admission answered before transform ran");
}

#[test]
fn preflight_with_star_and_no_credentials_answers_star() {
    let c = chain(&["cors-any"]);
    let mut r = req(Method::OPTIONS, &[EVIL, ACRM]);
    let Flow::Respond(resp) = c.on_request(&mut r, &mut RequestFacts::default(), "rid") else {
        panic!("answered")
    };
    assert_eq!(hv(resp.headers(), "access-control-allow-origin"), Some("*"));
    assert_eq!(hv(resp.headers(), "access-control-allow-methods"), Some("GET, HEAD, POST"));
    assert_eq!(hv(resp.headers(), "access-control-allow-credentials"), None);
    assert_eq!(hv(resp.headers(), "access-control-allow-headers"), None);
}

#[test]
fn preflight_from_other_origin_is_403_json() {
    let c = chain(&["cors"]);
    let mut r = req(Method::OPTIONS, &[EVIL, ACRM]);
    let Flow::Respond(resp) = c.on_request(&mut r, &mut RequestFacts::default(), "req-7") else {
        panic!("answered")
    };
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(hv(resp.headers(), "content-type"), Some("application/json"));
    assert_eq!(hv(resp.headers(), "access-control-allow-origin"), None);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json body");
    assert_eq!(body["code"], "AccessDenied");
    assert_eq!(body["message"], "CORS origin not allowed");
    assert_eq!(body["request_id"], "req-7");
}

#[test]
fn options_without_request_method_is_not_a_preflight() {
    let c = chain(&["cors"]);
    let mut facts = RequestFacts::default();
    let mut r = req(Method::OPTIONS, &[APP]);
    assert!(matches!(c.on_request(&mut r, &mut facts, "rid"), Flow::Continue));
    assert!(facts.origin.is_some());
    let mut r = req(Method::OPTIONS, &[ACRM]);
    assert!(matches!(c.on_request(&mut r, &mut RequestFacts::default(), "rid"), Flow::Continue));
}

#[test]
fn actual_request_from_allowed_origin_gets_cors_headers() {
    let c = chain(&["cors"]);
    let mut facts = RequestFacts::default();
    let mut r = req(Method::GET, &[("origin", "HTTPS://APP.example.com")]);
    assert!(matches!(c.on_request(&mut r, &mut facts, "rid"), Flow::Continue));
    let mut p = resp();
    p.headers.insert("vary", HeaderValue::from_static("accept-encoding"));
    p.headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    c.on_response(&facts, &mut p.headers);
    assert_eq!(hv(&p.headers, "access-control-allow-origin"), Some("HTTPS://APP.example.com"));
    assert_eq!(hv(&p.headers, "access-control-allow-credentials"), Some("true"));
    assert_eq!(hv(&p.headers, "access-control-expose-headers"), Some("x-trace"));
    let vary: Vec<_> = p.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["accept-encoding", "Origin"]);
    assert_eq!(hv(&p.headers, "access-control-max-age"), None);
}

#[test]
fn actual_request_from_other_or_no_origin_gets_only_vary() {
    let c = chain(&["cors"]);
    for headers in [&[EVIL][..], &[][..]] {
        let mut facts = RequestFacts::default();
        let mut r = req(Method::POST, headers);
        assert!(matches!(c.on_request(&mut r, &mut facts, "rid"), Flow::Continue));
        assert!(facts.origin.is_none());
        let mut p = resp();
        c.on_response(&facts, &mut p.headers);
        assert_eq!(hv(&p.headers, "access-control-allow-origin"), None);
        assert_eq!(hv(&p.headers, "vary"), Some("Origin"));
    }
}

#[test]
fn transform_runs_on_request_and_response_with_cors_last() {
    let c = chain(&["cors", "hdr", "hdr2"]);
    let mut facts = RequestFacts::default();
    let mut r = req(Method::GET, &[APP, ("x-internal", "secret")]);
    assert!(matches!(c.on_request(&mut r, &mut facts, "rid"), Flow::Continue));
    assert_eq!(hv(&r.headers, "x-gw"), Some("1"));
    assert!(!r.headers.contains_key("x-internal"));
    let mut p = resp();
    c.on_response(&facts, &mut p.headers);
    assert_eq!(hv(&p.headers, "access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(hv(&p.headers, "x-a"), Some("first"), "response ops run in reverse route order");
}

#[test]
fn build_errors_name_paths() {
    let errs = build_err(&["cors", "missing", "cors", "nothing", "bad-cors"]);
    assert_eq!(
        errs,
        [
            "routes[4].policies[1]: unknown policy \"missing\"",
            "routes[4].policies[2]: policy \"cors\" is listed twice",
            "policies[5]: a policy sets exactly one kind (headers or cors)",
            "routes[4].policies[4]: a route can have only one cors policy",
            "policies[6].cors.allow_credentials: credentials cannot be allowed together with origin \"*\"",
        ]
    );
}

#[test]
fn cors_config_errors() {
    let ps: Vec<Policy> = serde_json::from_value(json!([
        { "name": "c", "cors": { "allow_origins": [], "allow_methods": ["G T"], "allow_headers": ["a\nb"] } }
    ]))
    .expect("policies");
    let route: Route =
        serde_json::from_value(json!({ "name": "r", "service": "s", "policies": ["c"] })).expect("route");
    let errs = Chain::build(0, &route, &ps).expect_err("must fail");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "policies[0].cors.allow_origins",
            "policies[0].cors.allow_methods[0]",
            "policies[0].cors.allow_headers"
        ]
    );
}

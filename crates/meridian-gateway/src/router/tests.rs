use http::{HeaderMap, HeaderValue, Method};
use meridian_model::Route;
use serde_json::json;

use super::{RouteHit, Router};

/// A route from the `match` part of its config (service and name filled in).
fn route(m: serde_json::Value) -> Route {
    serde_json::from_value(json!({ "name": "r", "service": "s", "match": m })).expect("valid route json")
}

fn router(ms: Vec<serde_json::Value>) -> Router {
    Router::build(&ms.into_iter().map(route).collect::<Vec<_>>()).expect("routes compile")
}

fn get(r: &Router, host: &str, path: &str) -> Option<usize> {
    r.find(host, path, &Method::GET, &HeaderMap::new()).map(|h| h.index)
}

fn errors(ms: Vec<serde_json::Value>) -> Vec<String> {
    let routes: Vec<Route> = ms.into_iter().map(route).collect();
    Router::build(&routes).expect_err("must fail").iter().map(|e| e.to_string()).collect()
}

#[test]
fn empty_router_matches_nothing() {
    let r = router(vec![]);
    assert_eq!(get(&r, "a.com", "/"), None);
}

#[test]
fn host_tiers_exact_beats_longest_wildcard_beats_shorter_beats_none() {
    let r = router(vec![
        json!({}),                                  // 0: any host
        json!({ "hosts": ["*.example.com"] }),      // 1
        json!({ "hosts": ["*.eu.example.com"] }),   // 2
        json!({ "hosts": ["api.eu.example.com"] }), // 3
    ]);
    assert_eq!(get(&r, "api.eu.example.com", "/"), Some(3));
    assert_eq!(get(&r, "web.eu.example.com", "/"), Some(2));
    assert_eq!(get(&r, "a.b.eu.example.com", "/"), Some(2));
    assert_eq!(get(&r, "eu.example.com", "/"), Some(1));
    assert_eq!(get(&r, "a.b.example.com", "/"), Some(1));
    assert_eq!(get(&r, "example.com", "/"), Some(0), "wildcard needs a non-empty label");
    assert_eq!(get(&r, "other.org", "/"), Some(0));
    assert_eq!(get(&r, "", "/"), Some(0));
}

#[test]
fn hosts_are_case_insensitive_and_ignore_a_trailing_dot() {
    let r = router(vec![json!({ "hosts": ["API.Example.com."] }), json!({ "hosts": ["*.Example.COM"] })]);
    assert_eq!(get(&r, "api.example.com", "/"), Some(0));
    assert_eq!(get(&r, "API.EXAMPLE.COM", "/"), Some(0));
    assert_eq!(get(&r, "api.example.com.", "/"), Some(0));
    assert_eq!(get(&r, "Api.Example.Com.", "/"), Some(0));
    assert_eq!(get(&r, "WWW.example.com.", "/"), Some(1));
    assert_eq!(get(&r, "api.example.com:443", "/"), None, "the caller strips the port");
    assert_eq!(get(&r, &"A".repeat(300), "/"), None);
}

#[test]
fn host_star_and_several_hosts() {
    let r = router(vec![
        json!({ "hosts": ["a.com", "*.b.com"], "path": { "exact": "/x" } }),
        json!({ "hosts": ["*"], "path": { "prefix": "/" } }),
    ]);
    assert_eq!(get(&r, "a.com", "/x"), Some(0));
    assert_eq!(get(&r, "z.b.com", "/x"), Some(0));
    assert_eq!(get(&r, "a.com", "/y"), Some(1));
    assert_eq!(get(&r, "c.com", "/x"), Some(1));
}

#[test]
fn falls_through_to_the_next_host_tier() {
    let r = router(vec![
        json!({ "path": { "prefix": "/" } }),
        json!({ "hosts": ["*.example.com"], "path": { "prefix": "/static" } }),
        json!({ "hosts": ["api.example.com"], "path": { "prefix": "/v1" } }),
        json!({ "hosts": ["api.example.com"], "path": { "exact": "/admin" }, "methods": ["POST"] }),
    ]);
    assert_eq!(get(&r, "api.example.com", "/v1/users"), Some(2));
    assert_eq!(get(&r, "api.example.com", "/static/a.css"), Some(1));
    assert_eq!(get(&r, "api.example.com", "/unknown"), Some(0));
    assert_eq!(get(&r, "api.example.com", "/admin"), Some(0), "method mismatch falls through");
    let post = r.find("api.example.com", "/admin", &Method::POST, &HeaderMap::new());
    assert_eq!(post, Some(RouteHit { index: 3, prefix_len: 0 }));
}

#[test]
fn no_fall_through_means_none() {
    let r = router(vec![json!({ "hosts": ["a.com"], "path": { "prefix": "/api" } })]);
    assert_eq!(get(&r, "a.com", "/other"), None);
    assert_eq!(get(&r, "b.com", "/api"), None);
}

#[test]
fn path_precedence_exact_then_template_then_longest_prefix_then_none() {
    let r = router(vec![
        json!({}),                                                // 0
        json!({ "path": { "prefix": "/" } }),                     // 1
        json!({ "path": { "prefix": "/users" } }),                // 2
        json!({ "path": { "prefix": "/users/42" } }),             // 3
        json!({ "path": { "template": "/users/{id}" } }),         // 4
        json!({ "path": { "exact": "/users/42" } }),              // 5
        json!({ "path": { "template": "/users/{id}/{*rest}" } }), // 6
    ]);
    assert_eq!(get(&r, "h", "/users/42"), Some(5));
    assert_eq!(get(&r, "h", "/users/7"), Some(4));
    assert_eq!(get(&r, "h", "/users/42/orders"), Some(6));
    assert_eq!(get(&r, "h", "/users"), Some(2));
    assert_eq!(get(&r, "h", "/users/"), Some(2), "empty {{id}} does not match");
    assert_eq!(get(&r, "h", "/other"), Some(1));
    let no_root = router(vec![json!({}), json!({ "path": { "prefix": "/users" } })]);
    assert_eq!(get(&no_root, "h", "/users/1"), Some(1));
    assert_eq!(get(&no_root, "h", "/other"), Some(0), "no path matcher comes last");
}

#[test]
fn template_precedence_literals_first_then_static_beats_param() {
    let r = router(vec![
        json!({ "path": { "template": "/{a}/{b}/{c}" } }), // 0: 0 literals
        json!({ "path": { "template": "/{a}/x/{c}" } }),   // 1: 1 literal
        json!({ "path": { "template": "/a/{b}/{c}" } }),   // 2: 1 literal, earlier position
        json!({ "path": { "template": "/a/{b}/c" } }),     // 3: 2 literals
        json!({ "path": { "template": "/a/{*rest}" } }),   // 4
        json!({ "path": { "template": "/a/{b}" } }),       // 5
    ]);
    assert_eq!(get(&r, "h", "/a/x/c"), Some(3));
    assert_eq!(get(&r, "h", "/a/x/d"), Some(2));
    assert_eq!(get(&r, "h", "/b/x/d"), Some(1));
    assert_eq!(get(&r, "h", "/b/y/d"), Some(0));
    assert_eq!(get(&r, "h", "/a/q"), Some(5), "param beats catch-all");
    assert_eq!(get(&r, "h", "/a/q/r/s"), Some(4));
    assert_eq!(get(&r, "h", "/a/"), None, "catch-all needs at least one character");
    assert_eq!(get(&r, "h", "/b/q"), None);
}

#[test]
fn template_segments_match_exactly() {
    let r = router(vec![json!({ "path": { "template": "/users/{id}/orders" } })]);
    assert_eq!(get(&r, "h", "/users/1/orders"), Some(0));
    assert_eq!(get(&r, "h", "/users/1/orders/"), None);
    assert_eq!(get(&r, "h", "/users/1/orders/2"), None);
    assert_eq!(get(&r, "h", "/users//orders"), None);
    assert_eq!(get(&r, "h", "/users/1"), None);
    assert_eq!(get(&r, "h", "users/1/orders"), None);
    let root = router(vec![json!({ "path": { "template": "/" } })]);
    assert_eq!(get(&root, "h", "/"), Some(0));
    assert_eq!(get(&root, "h", "/a"), None);
}

#[test]
fn prefixes_match_at_segment_boundaries() {
    let r = router(vec![json!({ "path": { "prefix": "/api" } }), json!({ "path": { "prefix": "/v2/" } })]);
    let hit = |p: &str| r.find("h", p, &Method::GET, &HeaderMap::new());
    assert_eq!(hit("/api"), Some(RouteHit { index: 0, prefix_len: 4 }));
    assert_eq!(hit("/api/"), Some(RouteHit { index: 0, prefix_len: 4 }));
    assert_eq!(hit("/api/x/y"), Some(RouteHit { index: 0, prefix_len: 4 }));
    assert_eq!(hit("/apix"), None);
    assert_eq!(
        hit("/v2"),
        Some(RouteHit { index: 1, prefix_len: 3 }),
        "trailing slash of a prefix is dropped"
    );
    assert_eq!(hit("/v2/a"), Some(RouteHit { index: 1, prefix_len: 3 }));
    assert_eq!(hit("/v22"), None);
    let root = router(vec![json!({ "path": { "prefix": "/" } })]);
    assert_eq!(
        root.find("h", "/x", &Method::GET, &HeaderMap::new()),
        Some(RouteHit { index: 0, prefix_len: 0 })
    );
}

#[test]
fn exact_paths_are_exact() {
    let r = router(vec![json!({ "path": { "exact": "/a" } })]);
    assert_eq!(get(&r, "h", "/a"), Some(0));
    assert_eq!(get(&r, "h", "/a/"), None);
    assert_eq!(get(&r, "h", "/A"), None);
}

#[test]
fn methods_and_headers() {
    let r = router(vec![
        json!({ "methods": ["GET", "HEAD"] }),
        json!({ "methods": ["POST"], "headers": [{ "name": "X-Env", "value": "canary" }] }),
        json!({ "methods": ["POST"], "headers": [{ "name": "x-debug" }] }),
        json!({ "methods": ["PUT"], "headers": [{ "name": "x-env", "value": "canary", "invert": true }] }),
    ]);
    let mut h = HeaderMap::new();
    assert_eq!(r.find("h", "/", &Method::HEAD, &h).map(|x| x.index), Some(0));
    assert_eq!(r.find("h", "/", &Method::POST, &h), None);
    h.append("x-env", HeaderValue::from_static("prod"));
    assert_eq!(r.find("h", "/", &Method::POST, &h), None);
    assert_eq!(r.find("h", "/", &Method::PUT, &h).map(|x| x.index), Some(3));
    h.append("x-env", HeaderValue::from_static("canary"));
    assert_eq!(r.find("h", "/", &Method::POST, &h).map(|x| x.index), Some(1), "any repeated value may match");
    assert_eq!(r.find("h", "/", &Method::PUT, &h), None);
    let mut d = HeaderMap::new();
    d.insert("x-debug", HeaderValue::from_static(""));
    assert_eq!(r.find("h", "/", &Method::POST, &d).map(|x| x.index), Some(2));
    assert_eq!(r.find("h", "/", &Method::DELETE, &d), None);
}

#[test]
fn header_value_is_case_sensitive_and_absent_invert_matches() {
    let r = router(vec![
        json!({ "headers": [{ "name": "x-a", "value": "On" }] }),
        json!({ "headers": [{ "name": "x-b", "invert": true }] }),
    ]);
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("on"));
    h.insert("x-b", HeaderValue::from_static("1"));
    assert_eq!(r.find("h", "/", &Method::GET, &h), None);
    h.insert("x-a", HeaderValue::from_static("On"));
    assert_eq!(r.find("h", "/", &Method::GET, &h).map(|x| x.index), Some(0));
    assert_eq!(r.find("h", "/", &Method::GET, &HeaderMap::new()).map(|x| x.index), Some(1));
}

#[test]
fn ties_go_to_more_conditions_then_config_order() {
    let r = router(vec![
        json!({ "path": { "prefix": "/a" } }),                     // 0
        json!({ "path": { "prefix": "/a" } }),                     // 1
        json!({ "path": { "prefix": "/a" }, "methods": ["GET"] }), // 2
        json!({ "path": { "prefix": "/a" }, "methods": ["GET"], "headers": [{ "name": "x" }] }), // 3
        json!({ "path": { "exact": "/e" } }),                      // 4
        json!({ "path": { "exact": "/e" }, "headers": [{ "name": "x" }] }), // 5
    ]);
    let mut x = HeaderMap::new();
    x.insert("x", HeaderValue::from_static("1"));
    assert_eq!(r.find("h", "/a", &Method::GET, &x).map(|h| h.index), Some(3));
    assert_eq!(get(&r, "h", "/a"), Some(2));
    assert_eq!(r.find("h", "/a", &Method::POST, &x).map(|h| h.index), Some(0));
    assert_eq!(r.find("h", "/e", &Method::GET, &x).map(|h| h.index), Some(5));
    assert_eq!(get(&r, "h", "/e"), Some(4));
}

#[test]
fn exact_host_tier_wins_even_with_a_weaker_path() {
    let r = router(vec![
        json!({ "path": { "exact": "/x" } }),
        json!({ "hosts": ["*.a.com"], "path": { "exact": "/x" } }),
        json!({ "hosts": ["b.a.com"] }),
    ]);
    assert_eq!(get(&r, "b.a.com", "/x"), Some(2));
    assert_eq!(get(&r, "c.a.com", "/x"), Some(1));
    assert_eq!(get(&r, "a.com", "/x"), Some(0));
}

#[test]
fn config_errors_name_their_path() {
    let errs = errors(vec![
        json!({}),
        json!({ "hosts": ["ok.com", "*", "a.*.com", "x.com:80", ""], "methods": ["GET", "get", ""] }),
        json!({ "path": { "prefix": "api" } }),
        json!({ "path": { "template": "/a/{*rest}/b" } }),
        json!({ "path": { "template": "/a/x{id}" } }),
        json!({ "path": { "template": "/{id}/{id}" } }),
        json!({ "path": { "template": "/{}" } }),
        json!({ "headers": [{ "name": "bad name" }, { "name": "x", "value": "a\nb" }] }),
    ]);
    let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap_or("")).collect();
    assert_eq!(
        paths,
        [
            "routes[1].match.hosts[2]",
            "routes[1].match.hosts[3]",
            "routes[1].match.hosts[4]",
            "routes[1].match.methods[1]",
            "routes[1].match.methods[2]",
            "routes[2].match.path",
            "routes[3].match.path",
            "routes[4].match.path",
            "routes[5].match.path",
            "routes[6].match.path",
            "routes[7].match.headers[0].name",
            "routes[7].match.headers[1].value",
        ]
    );
    assert!(errs[1].contains("port"), "{}", errs[1]);
}

#[test]
fn many_routes_with_same_host_and_shared_paths() {
    let ms = (0..50).map(|i| json!({ "hosts": ["h.com"], "path": { "exact": format!("/r{i}") } })).collect();
    let r = router(ms);
    for i in 0..50 {
        assert_eq!(get(&r, "H.com", &format!("/r{i}")), Some(i));
    }
    assert_eq!(get(&r, "h.com", "/r50"), None);
}

/// The example table of docs/routing.md.
#[test]
fn docs_routing_example() {
    let r = router(vec![
        json!({ "path": { "prefix": "/" } }),
        json!({ "hosts": ["*.example.com"], "path": { "prefix": "/static" } }),
        json!({ "hosts": ["api.example.com"], "path": { "prefix": "/v1" } }),
        json!({ "hosts": ["api.example.com"], "path": { "template": "/v1/users/{id}" } }),
    ]);
    assert_eq!(get(&r, "API.example.com", "/v1/users/7"), Some(3));
    assert_eq!(get(&r, "api.example.com", "/v1/orders"), Some(2));
    assert_eq!(get(&r, "api.example.com", "/static/a.css"), Some(1));
    assert_eq!(get(&r, "api.example.com", "/unknown"), Some(0));
    assert_eq!(get(&r, "example.com", "/static/a.css"), Some(0));
}

//! One test per rule family, asserting the exact error lines.

use crate::valid::{parse_bootstrap, parse_global};

/// A minimal valid config that the tests extend.
const BASE: &str = "regions:\n  - name: r1\nservices:\n  - name: s1\n";

fn errors(yaml: &str) -> Vec<String> {
    match parse_global(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn with_base(extra: &str) -> Vec<String> {
    errors(&format!("{BASE}{extra}"))
}

#[test]
fn base_is_valid() {
    assert_eq!(with_base(""), Vec::<String>::new());
}

#[test]
fn names_are_well_formed_and_unique() {
    let got = errors(
        "deployment: Prod\nregions:\n  - name: US-East\n  - name: r1\n  - name: r1\n  - name: \"\"\n\
         services:\n  - name: s1\n  - name: s.1\n  - name: s1\n\
         consumers:\n  - name: c\n  - name: c\n    tags: [\"\"]\n",
    );
    assert_eq!(
        got,
        [
            "deployment: invalid name \"Prod\": use lowercase letters, digits, '-' and '_'",
            "regions[0].name: invalid name \"US-East\": use lowercase letters, digits and '-'",
            "regions[2].name: duplicate name \"r1\" (also regions[1])",
            "regions[3].name: must not be empty",
            "services[1].name: invalid name \"s.1\": use lowercase letters, digits, '-' and '_'",
            "services[2].name: duplicate name \"s1\" (also services[0])",
            "consumers[1].name: duplicate name \"c\" (also consumers[0])",
            "consumers[1].tags[0]: must not be empty",
        ]
    );
    assert_eq!(errors("services: []\n"), ["regions: at least one region is required"]);
}

#[test]
fn regions() {
    let got = errors(
        "regions:\n  - name: r1\n    public_addresses: [10.0.0.1, \"::1\", 10.0.0.1, example.com]\n\
         \x20   peer_address: 10.0.0.1\n    location: {lat: 91, lon: -180.5}\n\
         \x20 - name: r2\n    peer_address: gw.r2.internal:9443\n    location: {lat: -90, lon: 180}\n",
    );
    assert_eq!(
        got,
        [
            "regions[0].public_addresses[2]: duplicate address \"10.0.0.1\"",
            "regions[0].public_addresses[3]: invalid IP address \"example.com\"",
            "regions[0].peer_address: invalid address \"10.0.0.1\": expected host:port, e.g. 10.0.0.5:8080 or orders.internal:8080",
            "regions[0].location.lat: latitude 91 is out of range -90 to 90",
            "regions[0].location.lon: longitude -180.5 is out of range -180 to 180",
        ]
    );
}

#[test]
fn services() {
    let got = errors(
        "regions:\n  - name: eu-west-1\nservices:\n  - name: s1\n    endpoints:\n      eu-west-1:\n\
         \x20       - address: 10.0.0.1:80\n        - address: 999.0.0.1:80\n        - address: 10.0.0.1:80\n\
         \x20       - {address: \"orders.internal:0\", weight: 0}\n        - {address: \"a:1\", weight: 1001}\n\
         \x20     us-east-1: []\n    concurrency_limit: 0\n    resolve_interval: \"0\"\n\
         \x20   pool: {max_idle_per_endpoint: 20000, idle_timeout: \"0\"}\n\
         \x20 - name: s2\n    load_balancing: {policy: consistent_hash, hash_on: {header: \"x user\"}}\n\
         \x20 - name: s3\n    load_balancing: {policy: consistent_hash, hash_on: {cookie: \"a;b\"}}\n",
    );
    assert_eq!(
        got,
        [
            "services[0].endpoints.eu-west-1[1].address: invalid address \"999.0.0.1:80\": \"999.0.0.1\" is neither an IP address nor a hostname",
            "services[0].endpoints.eu-west-1[2].address: duplicate endpoint \"10.0.0.1:80\"",
            "services[0].endpoints.eu-west-1[3].address: invalid address \"orders.internal:0\": port must be 1 to 65535",
            "services[0].endpoints.eu-west-1[3].weight: weight 0 is out of range 1 to 1000",
            "services[0].endpoints.eu-west-1[4].weight: weight 1001 is out of range 1 to 1000",
            "services[0].endpoints.us-east-1: unknown region \"us-east-1\"",
            "services[0].concurrency_limit: must be at least 1",
            "services[0].pool.max_idle_per_endpoint: 20000 is more than 10000",
            "services[0].pool.idle_timeout: must be greater than 0",
            "services[0].resolve_interval: must be greater than 0",
            "services[1].load_balancing.hash_on.header: invalid header name \"x user\"",
            "services[2].load_balancing.hash_on.cookie: invalid cookie name \"a;b\"",
        ]
    );
}

#[test]
fn route_references() {
    let got = with_base(
        "policies:\n  - name: p1\n    cors: {allow_origins: [\"*\"]}\n\
         routes:\n  - name: a\n    service: ordrs\n    policies: [p1, x, p1]\n  - name: a\n    service: s1\n    match: {path: {exact: /a}}\n",
    );
    assert_eq!(
        got,
        [
            "routes[1].name: duplicate name \"a\" (also routes[0])",
            "routes[0].service: unknown service \"ordrs\"",
            "routes[0].policies[1]: unknown policy \"x\"",
            "routes[0].policies[2]: policy \"p1\" is listed twice",
        ]
    );
}

#[test]
fn route_hosts_methods_headers() {
    let got = with_base(
        "routes:\n  - name: a\n    service: s1\n    match:\n\
         \x20     hosts: [api.example.com, \"*.example.com\", API.example.com, \"a.*.com\", \"*\", \"x_y.com\", 10.0.0.1]\n\
         \x20     methods: [GET, get, \"G T\", GET]\n\
         \x20     headers: [{name: \"x a\"}, {name: x-b, value: \"v\\n\"}, {name: x-c, value: ok, invert: true}]\n",
    );
    assert_eq!(
        got,
        [
            "routes[0].match.hosts[2]: duplicate host \"API.example.com\"",
            "routes[0].match.hosts[3]: invalid host \"a.*.com\": only a leading \"*.\" wildcard is allowed",
            "routes[0].match.hosts[4]: invalid host \"*\": leave `hosts` empty to match any host",
            "routes[0].match.hosts[5]: invalid host \"x_y.com\": expected a hostname, an IP address or \"*.\" and a hostname",
            "routes[0].match.methods[1]: invalid method \"get\": methods are upper case (\"GET\")",
            "routes[0].match.methods[2]: invalid method \"G T\"",
            "routes[0].match.methods[3]: duplicate method \"GET\"",
            "routes[0].match.headers[0].name: invalid header name \"x a\"",
            "routes[0].match.headers[1].value: invalid header value \"v\\n\": only visible ASCII, spaces and tabs are allowed",
        ]
    );
}

#[test]
fn route_paths() {
    let route = |i: usize, kind: &str, path: &str| {
        format!("  - name: r{i}\n    service: s1\n    match: {{path: {{{kind}: \"{path}\"}}}}\n")
    };
    let cases = [
        ("exact", "api"),
        ("prefix", "/a b"),
        ("exact", "/a?b=1"),
        ("template", "/users/{id}/orders/{id}"),
        ("template", "/files/{*rest}/x"),
        ("template", "/users/x{id}"),
        ("template", "/users/{1d}"),
        ("template", "/a//{b}"),
        ("template", "/users/{id}/{*rest}"),
        ("template", "/users/{id}/"),
    ];
    let routes: String = cases.iter().enumerate().map(|(i, (k, p))| route(i, k, p)).collect();
    assert_eq!(
        with_base(&format!("routes:\n{routes}")),
        [
            "routes[0].match.path.exact: invalid path \"api\": must start with '/'",
            "routes[1].match.path.prefix: invalid path \"/a b\": ' ' is not allowed in a path matcher",
            "routes[2].match.path.exact: invalid path \"/a?b=1\": '?' is not allowed in a path matcher",
            "routes[3].match.path.template: invalid template \"/users/{id}/orders/{id}\": parameter \"id\" appears twice",
            "routes[4].match.path.template: invalid template \"/files/{*rest}/x\": {*rest} must be the last segment",
            "routes[5].match.path.template: invalid template \"/users/x{id}\": a parameter must be a whole segment, e.g. /users/{id}",
            "routes[6].match.path.template: invalid template \"/users/{1d}\": bad parameter name \"1d\"",
            "routes[7].match.path.template: invalid template \"/a//{b}\": empty segment",
        ]
    );
}

#[test]
fn route_timeouts_retries_rewrite() {
    let got = with_base(
        "routes:\n  - name: a\n    service: s1\n    strip_prefix: true\n    match: {path: {exact: /a}}\n\
         \x20   timeouts: {connect: \"0\", per_try: 10s, request: 5s, idle: \"0\"}\n\
         \x20   retries: {budget_percent: 101, on_statuses: [503, 99, 600, 503]}\n",
    );
    assert_eq!(
        got,
        [
            "routes[0].strip_prefix: requires a prefix path matcher",
            "routes[0].timeouts.connect: must be greater than 0",
            "routes[0].timeouts.idle: must be greater than 0",
            "routes[0].timeouts.per_try: per_try (10s) is longer than request (5s)",
            "routes[0].retries.budget_percent: 101 is more than 100",
            "routes[0].retries.on_statuses[1]: status 99 is out of range 100 to 599",
            "routes[0].retries.on_statuses[2]: status 600 is out of range 100 to 599",
            "routes[0].retries.on_statuses[3]: duplicate status 503",
        ]
    );
    // per_try null means "no per-try limit", which is fine with any request timeout.
    assert!(
        with_base("routes:\n  - {name: a, service: s1, timeouts: {per_try: null, request: 1s}}\n").is_empty()
    );
}

#[test]
fn identical_matches() {
    let got = with_base(
        "routes:\n  - name: orders-v1\n    service: s1\n\
         \x20   match: {hosts: [a.com, B.com], path: {prefix: /o}, methods: [GET, POST], headers: [{name: X-V, value: \"1\"}]}\n\
         \x20 - name: orders-v2\n    service: s1\n\
         \x20   match: {hosts: [a.com, B.com], path: {prefix: /o}, methods: [GET, POST], headers: [{name: x-v, value: \"2\"}]}\n\
         \x20 - name: orders-v3\n    service: s1\n\
         \x20   match: {hosts: [b.com, a.com], path: {prefix: /o}, methods: [POST, GET], headers: [{name: x-v, value: \"1\"}]}\n\
         \x20 - name: any-1\n    service: s1\n  - name: any-2\n    service: s1\n",
    );
    assert_eq!(
        got,
        [
            "routes[2]: same match as routes[0] (\"orders-v1\")",
            "routes[4]: same match as routes[3] (\"any-1\")"
        ]
    );
}

#[test]
fn policies_kind_and_headers() {
    let got = with_base(
        "policies:\n  - name: empty\n  - name: both\n    headers: {}\n    cors: {allow_origins: [\"*\"]}\n\
         \x20 - name: h\n    headers:\n      request:\n        remove: [x-a, X-A, connection]\n\
         \x20       rename: {x-old: transfer-encoding, \"bad name\": x-new}\n\
         \x20       set: {X-One: \"1\", x-one: \"2\", host: h, x-two: \"a\\u0000\"}\n\
         \x20     response:\n        add: {Upgrade: x}\n",
    );
    assert_eq!(
        got,
        [
            "policies[0]: exactly one of headers, cors must be set",
            "policies[1]: exactly one of headers, cors must be set",
            "policies[2].headers.request.remove[1]: header \"X-A\" is listed twice",
            "policies[2].headers.request.remove[2]: header \"connection\" is managed by the gateway and cannot be changed",
            "policies[2].headers.request.rename.bad name: invalid header name \"bad name\"",
            "policies[2].headers.request.rename.x-old: target: header \"transfer-encoding\" is managed by the gateway and cannot be changed",
            "policies[2].headers.request.set.host: header \"host\" is managed by the gateway and cannot be changed",
            "policies[2].headers.request.set.x-one: same header as \"X-One\" (names are case-insensitive)",
            "policies[2].headers.request.set.x-two: invalid header value \"a\\0\": only visible ASCII, spaces and tabs are allowed",
            "policies[2].headers.response.add.Upgrade: header \"Upgrade\" is managed by the gateway and cannot be changed",
        ]
    );
}

#[test]
fn policies_cors() {
    let got = with_base(
        "policies:\n  - name: none\n    cors: {allow_origins: []}\n\
         \x20 - name: creds\n    cors: {allow_origins: [\"*\"], allow_credentials: true}\n\
         \x20 - name: mixed\n    cors:\n      allow_origins: [\"*\", \"https://a.com\", \"a.com\", \"https://a.com/\"]\n\
         \x20     allow_methods: [get]\n      allow_headers: [\"*\", \"x y\"]\n      expose_headers: [\"x,y\"]\n",
    );
    assert_eq!(
        got,
        [
            "policies[0].cors.allow_origins: at least one origin is required",
            "policies[1].cors.allow_origins[0]: \"*\" cannot be used with allow_credentials: list the origins",
            "policies[2].cors.allow_origins[0]: \"*\" must be the only origin",
            "policies[2].cors.allow_origins[2]: invalid origin \"a.com\": expected \"*\" or scheme://host[:port], e.g. https://app.example.com",
            "policies[2].cors.allow_origins[3]: invalid origin \"https://a.com/\": an origin has no path (not even a trailing '/')",
            "policies[2].cors.allow_methods[0]: invalid method \"get\": methods are upper case (\"GET\")",
            "policies[2].cors.allow_headers[1]: invalid header name \"x y\"",
            "policies[2].cors.expose_headers[0]: invalid header name \"x,y\"",
        ]
    );
}

fn bootstrap_errors(yaml: &str) -> Vec<String> {
    match parse_bootstrap(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bootstrap_minimal_is_valid() {
    let ok = "node: {id: gw-1, region: r1}\nlisteners: [{name: public, address: \"127.0.0.1:0\"}]\n\
              config: {source: file, path: g.yaml}\n";
    assert_eq!(bootstrap_errors(ok), Vec::<String>::new());
}

#[test]
fn bootstrap_rules() {
    let got = bootstrap_errors(
        "node: {id: \"\", region: \"\"}\nlisteners:\n  - {name: a, address: \"127.0.0.1:8080\"}\n\
         \x20 - {name: a, address: \"localhost:80\"}\n  - {name: b, address: \"127.0.0.1:8080\"}\n\
         \x20 - name: c\n    address: \"[::1]:443\"\n    tls: {certificates: [], min_version: \"1.1\"}\n\
         \x20 - name: d\n    address: \"0.0.0.0:443\"\n\
         \x20   tls: {certificates: [{cert: \"\", key: k.pem, server_names: [\"a.*\"]}]}\n\
         \x20   limits: {max_header_count: 0, max_body_bytes: 0, idle_timeout: \"0\", max_concurrent_streams: 0}\n\
         admin: {address: \"127.0.0.1:8080\"}\nconfig: {source: file, path: \"\", watch_interval: \"0\"}\n\
         workers: 0\ntrusted_proxies: [10.0.0.0/8, \"::1\", 10.0.0.0/40, proxy]\n\
         access_log: {enabled: true, flush_interval: \"0\"}\n",
    );
    assert_eq!(
        got,
        [
            "node.id: must not be empty",
            "node.region: must not be empty",
            "listeners[1].name: duplicate name \"a\" (also listeners[0])",
            "listeners[1].address: invalid address \"localhost:80\": expected ip:port, e.g. 127.0.0.1:8080",
            "listeners[2].address: address 127.0.0.1:8080 is also used by listeners[0]",
            "listeners[3].tls.certificates: at least one certificate is required",
            "listeners[3].tls.min_version: unsupported TLS version \"1.1\": use \"1.2\" or \"1.3\"",
            "listeners[4].tls.certificates[0].cert: must not be empty",
            "listeners[4].tls.certificates[0].server_names[0]: invalid host \"a.*\": only a leading \"*.\" wildcard is allowed",
            "listeners[4].limits.max_header_count: must be greater than 0",
            "listeners[4].limits.max_body_bytes: must be greater than 0",
            "listeners[4].limits.max_concurrent_streams: must be greater than 0",
            "listeners[4].limits.idle_timeout: must be greater than 0",
            "admin.address: address 127.0.0.1:8080 is also used by listeners[0]",
            "config.path: must not be empty",
            "config.watch_interval: must be greater than 0",
            "workers: must be at least 1",
            "trusted_proxies[2]: invalid address \"10.0.0.0/40\": expected a CIDR (10.0.0.0/8) or an IP address",
            "trusted_proxies[3]: invalid address \"proxy\": expected a CIDR (10.0.0.0/8) or an IP address",
            "access_log.flush_interval: must be greater than 0",
        ]
    );
    assert_eq!(
        bootstrap_errors("node: {id: n, region: r}\nconfig: {source: file, path: g.yaml}\n"),
        ["listeners: at least one listener is required"]
    );
}

#[test]
fn bootstrap_control_source() {
    let base = "node: {id: gw-1, region: r1}\nlisteners: [{name: public, address: \"127.0.0.1:0\"}]\n";
    let ok = format!(
        "{base}config: {{source: control, urls: [\"http://127.0.0.1:7000\", \"http://ctl-2:7000/\"], token_file: t}}\n\
         snapshot_path: /var/lib/meridian/gw-1\n"
    );
    assert_eq!(bootstrap_errors(&ok), Vec::<String>::new());
    let bad = format!(
        "{base}config: {{source: control, urls: [\"https://a:1\", \"http://a\"], token_file: \"\"}}\n"
    );
    assert_eq!(
        bootstrap_errors(&bad),
        [
            "config.urls[0]: \"https://a:1\": expected http://host:port",
            "config.urls[1]: \"http://a\": expected http://host:port",
            "config.token_file: must not be empty",
            "snapshot_path: required with `source: control` (the node boots from it when no control instance is reachable)",
        ]
    );
    let empty = format!("{base}config: {{source: control, urls: [], token_file: t}}\nsnapshot_path: s\n");
    assert_eq!(bootstrap_errors(&empty), ["config.urls: at least one control URL is required"]);
}

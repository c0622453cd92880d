//! The crate's integration tests: every example file, YAML errors, the canonical hash, the
//! YAML round trip, and the committed JSON Schemas.

use std::path::{Path, PathBuf};

use meridian_model::{
    ConfigSource, GlobalConfig, bootstrap_schema, check_bootstrap, global_schema, load_bootstrap,
    load_global, parse_bootstrap, parse_global, validate_global,
};

/// The repository root: bootstrap paths are relative to it (the working directory the
/// examples are meant to be run from).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn is_bootstrap(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".bootstrap.yaml"))
}

fn error_lines(r: Result<impl Sized, meridian_model::ConfigErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_example_is_valid() {
    let files = example_files();
    assert!(files.len() >= 3, "expected the examples, found {files:?}");
    let mut checked_against_global = 0;
    for f in &files {
        if is_bootstrap(f) {
            let b = load_bootstrap(f).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
            let ConfigSource::File { path, .. } = &b.config else { continue };
            let global = root().join(path);
            if global.starts_with(root().join("examples")) && global.exists() {
                let g = load_global(&global).unwrap_or_else(|e| panic!("{}:\n{e}", global.display()));
                check_bootstrap(&b, &g)
                    .unwrap_or_else(|e| panic!("{} against {}:\n{e}", f.display(), path.display()));
                checked_against_global += 1;
            }
        } else {
            load_global(f).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
        }
    }
    assert!(checked_against_global >= 1, "no bootstrap was checked against its global config");
}

#[test]
fn every_example_round_trips_through_canonical_yaml() {
    for f in example_files().iter().filter(|f| !is_bootstrap(f)) {
        let v = load_global(f).unwrap();
        let again =
            parse_global(&v.to_yaml()).unwrap_or_else(|e| panic!("{}: canonical YAML:\n{e}", f.display()));
        assert_eq!(again.hash(), v.hash(), "{}", f.display());
        assert_eq!(again.canonical_json(), v.canonical_json());
        assert_eq!(again.to_yaml(), v.to_yaml(), "canonical YAML is a fixed point");
        // The gateway persists canonical JSON as its last-known-good snapshot and reads it back.
        let from_json: GlobalConfig = serde_json::from_str(v.canonical_json()).unwrap();
        assert_eq!(validate_global(from_json).unwrap().hash(), v.hash(), "{}", f.display());
    }
}

#[test]
fn bootstrap_region_must_exist_in_global() {
    let b = parse_bootstrap(
        "node: {id: gw-1, region: mars-1}\nlisteners: [{name: public, address: \"127.0.0.1:8080\"}]\n\
         config: {source: file, path: g.yaml}\n",
    )
    .unwrap();
    let g = parse_global("regions: [{name: local}]\n").unwrap();
    assert_eq!(error_lines(check_bootstrap(&b, &g)), ["node.region: unknown region \"mars-1\""]);
}

#[test]
fn many_errors_are_reported_at_once() {
    let yaml = r#"
regions:
  - name: eu-west-1
    public_addresses: [not-an-ip]
services:
  - name: orders
    endpoints:
      eu-west-1:
        - address: 10.0.0.1:8080
        - address: "10.0.0.2:99999"
          weight: 0
      us-east-1:
        - address: 10.1.0.1:8080
routes:
  - name: orders-v1
    match: {path: {prefix: /orders}}
    service: orders
  - name: orders-v2
    match: {path: {prefix: /orders}}
    service: ordrs
    policies: [x]
policies:
  - name: cors
    cors:
      allow_origins: ["*"]
      allow_credentials: true
  - name: nothing
"#;
    let err = parse_global(yaml).unwrap_err();
    assert_eq!(
        err.to_string(),
        "regions[0].public_addresses[0]: invalid IP address \"not-an-ip\"\n\
         services[0].endpoints.eu-west-1[1].address: invalid address \"10.0.0.2:99999\": port must be 1 to 65535\n\
         services[0].endpoints.eu-west-1[1].weight: weight 0 is out of range 1 to 1000\n\
         services[0].endpoints.us-east-1: unknown region \"us-east-1\"\n\
         routes[1].service: unknown service \"ordrs\"\n\
         routes[1].policies[0]: unknown policy \"x\"\n\
         routes[1]: same match as routes[0] (\"orders-v1\")\n\
         policies[0].cors.allow_origins[0]: \"*\" cannot be used with allow_credentials: list the origins\n\
         policies[1]: exactly one of headers, cors must be set"
    );
}

#[test]
fn unknown_keys_are_rejected_with_path_line_and_column() {
    assert_eq!(
        error_lines(parse_global("regions:\n  - name: a\n    bogus: 1\n")),
        [
            "regions[0].bogus: unknown field `bogus`, expected one of name, public_addresses, peer_address, location, latency_ms (line 3, column 5)"
        ]
    );
    assert_eq!(
        error_lines(parse_global(
            "regions: [{name: r}]\nservices:\n  - name: s\n    endpoints:\n      r:\n        - address: x:1\n          weigth: 2\n"
        )),
        [
            "services[0].endpoints.r[0].weigth: unknown field `weigth`, expected one of address, weight (line 7, column 11)"
        ]
    );
    assert_eq!(
        error_lines(parse_global("regions: [{name: r}]\nroute: []\n")),
        [
            "route: unknown field `route`, expected one of deployment, regions, services, routes, policies, consumers, dns (line 2, column 1)"
        ]
    );
    assert_eq!(
        error_lines(parse_bootstrap(
            "node: {id: n, region: r, zone: z}\nconfig: {source: file, path: g.yaml}\n"
        )),
        ["node.zone: unknown field `zone`, expected one of id, region, source_address (line 1, column 26)"]
    );
}

#[test]
fn type_and_shape_errors_name_the_path() {
    let cases = [
        (
            "regions: [{name: r}]\nservices:\n  - name: s\n    concurrency_limit: many\n",
            "services[0].concurrency_limit: invalid u32 (line 4, column 24)",
        ),
        (
            "regions: [{name: r}]\nroutes:\n  - name: a\n    service: s\n    timeouts: {connect: 5x}\n",
            "routes[0].timeouts.connect: invalid duration \"5x\": unknown unit \"x\" (use ms, s, m or h) (line 5, column 25)",
        ),
        (
            "regions: [{name: r}]\nroutes:\n  - name: a\n    service: s\n    match:\n      path: {regex: x}\n",
            "routes[0].match.path.regex: unknown variant `regex`, expected one of exact, prefix, template (line 6, column 14)",
        ),
        (
            "regions: [{name: r}]\nroutes:\n  - name: a\n",
            "routes[0]: missing field `service` (line 3, column 5)",
        ),
        (
            "regions: [{name: r}]\nroutes:\n  - {name: a}\n",
            "routes[0]: missing field `service` (line 3, column 6)",
        ),
        ("regions: 5\n", "regions: expected sequence start (line 1, column 10)"),
        (
            "regions:\n  - name: a\n    name: b\n",
            "regions[0].name: duplicate mapping key: name, set DuplicateKeyPolicy in Options if acceptable (line 3, column 5)",
        ),
        ("regions: [\n", "regions: unclosed bracket '[' (line 1, column 10)"),
    ];
    for (yaml, want) in cases {
        assert_eq!(error_lines(parse_global(yaml)), [want], "for {yaml:?}");
    }
}

const SMALL: &str = "
regions:
  - name: eu-west-1
services:
  - name: orders
    endpoints:
      eu-west-1:
        - address: orders.internal:8080
routes:
  - name: orders
    match:
      hosts: [api.example.com]
      path: {prefix: /orders}
    service: orders
";

#[test]
fn hash_ignores_layout_comments_key_order_and_spelled_out_defaults() {
    let base = parse_global(SMALL).unwrap();
    assert_eq!(base.hash().len(), 64);
    assert!(base.hash().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    let reordered = "# the same config, written differently
routes:
- service: orders   # key order differs
  match: {path: {prefix: /orders}, hosts: [API.Example.com]}
  name: orders
services: [{name: orders, endpoints: {eu-west-1: [{address: Orders.Internal:8080}]}}]
regions: [{name: eu-west-1}]
";
    let explicit = format!(
        "deployment: default\n{SMALL}    policies: []\n    strip_prefix: false\n\
         \x20   timeouts: {{connect: 5s, per_try: 30s, request: null, idle: null}}\n\
         \x20   retries: {{attempts: 2, budget_percent: 20, min_per_second: 10, on_statuses: [503],\n\
         \x20             allow_non_idempotent: false, max_replay_body_bytes: 65536}}\n\
         policies: []\nconsumers: []\n"
    );
    let explicit_service = SMALL.replace(
        "        - address: orders.internal:8080\n",
        "        - address: orders.internal:8080\n          weight: 1\n    protocol: http1\n\
         \x20   load_balancing: {policy: round_robin}\n    concurrency_limit: 10000\n\
         \x20   pool: {max_idle_per_endpoint: 64, idle_timeout: 1m30s}\n    resolve_interval: 30000ms\n",
    );
    for other in [reordered.to_string(), explicit, explicit_service] {
        let v = parse_global(&other).unwrap_or_else(|e| panic!("{other}\n{e}"));
        assert_eq!(v.canonical_json(), base.canonical_json(), "{other}");
        assert_eq!(v.hash(), base.hash());
    }

    // Any real change changes the hash.
    for changed in [
        SMALL.replace("/orders}", "/order}"),
        SMALL.replace("8080", "8081"),
        format!("deployment: prod\n{SMALL}"),
        format!("{SMALL}    timeouts: {{per_try: null}}\n"),
    ] {
        assert_ne!(parse_global(&changed).unwrap().hash(), base.hash(), "{changed}");
    }
}

#[test]
fn normalisation_lowercases_hosts_and_header_names_only() {
    let v = parse_global(
        "regions: [{name: r}]\nservices: [{name: s}]\n\
         routes:\n  - name: a\n    service: s\n    policies: [h]\n\
         \x20   match: {hosts: [\"*.Example.COM\"], methods: [GET], headers: [{name: X-Tenant, value: Acme}]}\n\
         policies:\n  - name: h\n    headers: {request: {set: {X-Gateway: Meridian}, rename: {X-Old: X-New}}}\n",
    )
    .unwrap();
    let c = v.config();
    assert_eq!(c.routes[0].matcher.hosts, ["*.example.com"]);
    assert_eq!(c.routes[0].matcher.methods, ["GET"]);
    assert_eq!(c.routes[0].matcher.headers[0].name, "x-tenant");
    assert_eq!(c.routes[0].matcher.headers[0].value.as_deref(), Some("Acme"), "values keep their case");
    let h = c.policies[0].headers.as_ref().unwrap();
    assert_eq!(h.request.set.get("x-gateway").map(String::as_str), Some("Meridian"));
    assert_eq!(h.request.rename.get("x-old").map(String::as_str), Some("x-new"));
}

#[test]
fn canonical_yaml_keeps_strings_that_look_like_other_types() {
    let v = parse_global(
        "deployment: \"123\"\nregions: [{name: r}]\nservices: [{name: s}]\nconsumers:\n\
         \x20 - {name: c, tags: [\"true\", \"null\", \"~\", \"yes\", \"1.5\", \"0x10\", \"a: b\", \"#x\", \"\"]}\n",
    );
    // The empty tag is rejected; the rest must survive a round trip as strings.
    assert_eq!(error_lines(v), ["consumers[0].tags[8]: must not be empty"]);
    let v = parse_global(
        "deployment: \"123\"\nregions: [{name: r}]\nservices: [{name: s}]\nconsumers:\n\
         \x20 - {name: c, tags: [\"true\", \"null\", \"~\", \"yes\", \"1.5\", \"0x10\", \"a: b\", \"#x\"]}\n",
    )
    .unwrap();
    let again = parse_global(&v.to_yaml()).unwrap_or_else(|e| panic!("{}\n{e}", v.to_yaml()));
    assert_eq!(again.config(), v.config());
    assert_eq!(again.hash(), v.hash());
}

#[test]
fn canonical_yaml_of_quickstart_matches_golden_file() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quickstart.canonical.yaml");
    let v = load_global(&root().join("examples/quickstart.yaml")).unwrap();
    check_or_update(&golden, &v.to_yaml(), "UPDATE_GOLDEN");
}

#[test]
fn committed_json_schemas_are_current() {
    for (name, schema) in [("global", global_schema()), ("bootstrap", bootstrap_schema())] {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        check_or_update(&root().join(format!("schema/{name}.schema.json")), &text, "UPDATE_SCHEMA");
    }
    let g = global_schema();
    assert_eq!(
        g["additionalProperties"],
        serde_json::json!(false),
        "unknown keys are errors in the schema too"
    );
}

/// Compares a committed file with what the code generates, or rewrites it when `env_var=1`.
fn check_or_update(path: &Path, generated: &str, env_var: &str) {
    if std::env::var(env_var).is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; run `{env_var}=1 cargo test -p meridian-model` and commit the result",
        path.display()
    );
}

#[test]
fn load_errors_name_the_file() {
    let e = load_global(Path::new("/nonexistent/meridian.yaml")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read /nonexistent/meridian.yaml: "), "{e}");
}

# shellcheck shell=bash
# The director's benchmark config and query mix, shared by bench/dns.sh and
# bench/dns-callgrind.sh. Sourced, not run.

# dns_director_config FILE HTTP_PORT INTERVAL TIMEOUT: the global config the director serves:
# the names Knot serves (bench/dns.sh) with routing policies, response rate limiting, and
# health checks (every region's check is the director's own /v1/health, probed by checkers).
dns_director_config() {
    cat >"$1" <<YAML
deployment: bench
regions:
  - { name: r1, public_addresses: [127.0.0.1], location: { lat: 38.9, lon: -77.4 } }
  - { name: r2, public_addresses: [127.0.0.1], location: { lat: 53.3, lon: -6.3 } }
  - { name: r3, public_addresses: [127.0.0.1], location: { lat: -33.9, lon: 151.2 } }
dns:
  zones:
    - name: api.example.com.
      ttl: 60s
      soa: { rname: hostmaster.example.com., minimum: 30s }
      ns: [ { name: ns1.api.example.com., address: 127.0.0.1 } ]
  record_sets:
    - { name: api.example.com., type: A, policy: { kind: simple, region: r1 } }
    - { name: api.example.com., type: TXT, policy: { kind: simple, values: ["v=meridian1"] } }
    - { name: latency.api.example.com., type: A, policy: { kind: latency, regions: [r1, r2, r3] } }
    - name: weighted.api.example.com.
      type: A
      policy: { kind: weighted, members: [ { region: r1, weight: 3 }, { region: r2, weight: 1 } ] }
    - { name: failover.api.example.com., type: A, policy: { kind: failover, primary: r1, secondary: r2 } }
    - name: multi.api.example.com.
      type: A
      policy: { kind: multivalue, members: [ { region: r1 }, { region: r2 }, { region: r3 } ] }
  latency:
    - { cidr: 127.0.0.0/8, region_ms: { r1: 80, r2: 12, r3: 290 } }
  # Response rate limiting stays on (its bookkeeping is part of every answer), with a limit
  # that one benchmark client network never reaches.
  rate_limit: { responses_per_second: 100000000, burst: 100000000 }
  health:
    interval: $3
    timeout: $4
    failure_threshold: 3
    checks:
      - { name: r1, region: r1, port: $2, path: /v1/health }
      - { name: r2, region: r2, port: $2, path: /v1/health }
      - { name: r3, region: r3, port: $2, path: /v1/health }
YAML
}

# dns_checker_configs DIR DIRECTOR_HTTP_ADDR: one checker config per region, DIR/checker-rN.yaml,
# reading DIR/global.yaml.
dns_checker_configs() {
    local r
    for r in r1 r2 r3; do
        cat >"$1/checker-$r.yaml" <<YAML
node: { id: chk-$r, region: $r, source_address: "127.0.0.1" }
config: global.yaml
directors: ["$2"]
YAML
    done
}

# dns_queries FILE: the query mix, one name each, in turn: simple A, latency A, weighted A,
# failover A, multivalue A, TXT, NXDOMAIN.
dns_queries() {
    {
        echo "api.example.com A"
        echo "latency.api.example.com A"
        echo "weighted.api.example.com A"
        echo "failover.api.example.com A"
        echo "multi.api.example.com A"
        echo "api.example.com TXT"
        echo "nothing.api.example.com A"
    } >"$1"
}

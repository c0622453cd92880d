#!/usr/bin/env bash
# Compare the DNS director with Knot DNS: dnsperf against each, same machine, same run,
# interleaved rounds, one worker each on the same core.
#
#   bench/dns.sh [--rounds N] [--duration S] [--clients C]
#
# Defaults: 3 rounds, 10 s per run, 20 dnsperf clients. MERIDIAN_BIN=/path/to/meridian skips
# `cargo build --release -p meridian`. TARGET_CPU / WRK_CPU override the cores (server / the rest).
#
# The director answers with its routing policies and health on: three checkers (one per
# region) report to it every 500 ms, so every answer goes through the quorum health view.
# Knot serves the same names as static records. The query mix (one name each, in turn):
# simple A, latency A, weighted A, failover A, multivalue A, TXT, NXDOMAIN.
# CPU per query = the server process's utime+stime over the run / queries completed.
# Everything binds to and targets 127.0.0.1; every dnsperf run is bounded in time.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/dns-config.sh
source "$(dirname "${BASH_SOURCE[0]}")/dns-config.sh"

ROUNDS=3
DURATION=10
CLIENTS=20
KNOT_PORT=${KNOT_PORT:-19053}
DIRECTOR_PORT=${DIRECTOR_PORT:-19054}
DIRECTOR_HTTP=${DIRECTOR_HTTP:-19055}

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --clients) CLIENTS=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

bench_install_traps
for tool in dnsperf knotd taskset; do
    command -v "$tool" >/dev/null || apt_install dnsperf knot util-linux ||
        die "$tool is needed: apt-get install -y dnsperf knot"
done
command -v dnsperf >/dev/null && command -v knotd >/dev/null || die "dnsperf and knotd are needed"
setup_cpus
ensure_meridian
make_workdir
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# ---------------------------------------------------------------------------------------------
# Knot: the same names as static records.
mkdir -p "$WORKDIR/knot"
cat >"$WORKDIR/knot/api.example.com.zone" <<'EOF'
$ORIGIN api.example.com.
$TTL 60
@           SOA ns1 hostmaster.example.com. 1 3600 600 86400 30
@           NS  ns1
ns1         A   127.0.0.1
@           A   127.0.1.1
@           TXT "v=meridian1"
latency     A   127.0.2.1
weighted    A   127.0.1.1
failover    A   127.0.1.1
multi       A   127.0.1.1
multi       A   127.0.2.1
EOF
cat >"$WORKDIR/knot/knot.conf" <<EOF
server:
    listen: $HOST@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    rundir: "$WORKDIR/knot"
log:
  - target: stderr
    any: warning
database:
    storage: "$WORKDIR/knot"
template:
  - id: default
    storage: "$WORKDIR/knot"
zone:
  - domain: api.example.com
    file: api.example.com.zone
EOF

# ---------------------------------------------------------------------------------------------
# The director: the same names with routing policies, and health from three checkers.
dns_director_config "$WORKDIR/global.yaml" "$DIRECTOR_HTTP" 500ms 400ms
dns_checker_configs "$WORKDIR" "$HOST:$DIRECTOR_HTTP"
dns_queries "$WORKDIR/queries.txt"

SERVER_PID=""
start_knot() {
    taskset -c "$TARGET_CPU" knotd -c "$WORKDIR/knot/knot.conf" >"$WORKDIR/knot.log" 2>&1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
}
start_director() {
    taskset -c "$TARGET_CPU" "$MERIDIAN" director -f "$WORKDIR/global.yaml" --listen "$HOST:$DIRECTOR_PORT" \
        --http "$HOST:$DIRECTOR_HTTP" --workers 1 >"$WORKDIR/director.log" 2>&1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    local r
    for r in r1 r2 r3; do
        (cd "$WORKDIR" && MERIDIAN_LOG=warn exec taskset -c "$WRK_CPU" "$MERIDIAN" checker -c "checker-$r.yaml" \
            >"$WORKDIR/checker-$r.log" 2>&1) &
        CHECKERS+=("$!")
        STARTED_PIDS+=("$!")
    done
}
stop_server() {
    local p
    for p in "$SERVER_PID" "${CHECKERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$SERVER_PID" "${CHECKERS[@]}"; do wait "$p" 2>/dev/null || true; done
    CHECKERS=()
}
wait_dns() { # port
    local i
    for ((i = 0; i < START_DEADLINE_S * 10; i++)); do
        if dig @"$HOST" -p "$1" api.example.com A +tries=1 +time=1 +short 2>/dev/null | grep -q .; then return 0; fi
        sleep 0.1
    done
    die "no DNS answer on port $1 (see $WORKDIR/*.log)"
}
CHECKERS=()

# One run: prints "qps cpu_us_per_query completed lost".
run_one() { # name port
    local out t0 t1 completed lost qps
    wait_dns "$2"
    # Warm-up (and, for the director, let the checkers' first reports arrive).
    taskset -c "$WRK_CPU" dnsperf -s "$HOST" -p "$2" -d "$WORKDIR/queries.txt" -c "$CLIENTS" -l 2 >/dev/null 2>&1 || true
    t0=$(cpu_ticks "$SERVER_PID")
    out=$(taskset -c "$WRK_CPU" dnsperf -s "$HOST" -p "$2" -d "$WORKDIR/queries.txt" -c "$CLIENTS" -l "$DURATION" 2>&1)
    t1=$(cpu_ticks "$SERVER_PID")
    echo "$out" >"$WORKDIR/dnsperf-$1.txt"
    completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
    lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
    qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
    [[ -n "$completed" && "$completed" -gt 0 ]] || die "dnsperf completed no query against $1: $out"
    awk -v q="$qps" -v t=$((t1 - t0)) -v us="$TICK_US" -v n="$completed" -v l="$lost" \
        'BEGIN {printf "%.0f %.2f %d %d\n", q, t * us / n, n, l}'
}

check_port_free "$KNOT_PORT"
check_port_free "$DIRECTOR_PORT"
check_port_free "$DIRECTOR_HTTP"
log "server core $TARGET_CPU, dnsperf and checkers on core $WRK_CPU; $ROUNDS rounds of ${DURATION}s, $CLIENTS clients"
declare -a KNOT_RES DIR_RES
for ((round = 1; round <= ROUNDS; round++)); do
    start_knot
    r=$(run_one knot "$KNOT_PORT")
    stop_server
    KNOT_RES+=("$r")
    log "round $round knot:     $r (qps, CPU us/query, completed, lost)"
    start_director
    r=$(run_one director "$DIRECTOR_PORT")
    # The answers really went through the health view: every region healthy by quorum.
    health=$(curl -fsS "http://$HOST:$DIRECTOR_HTTP/v1/health" || true)
    grep -q '"partitioned":false' <<<"$health" || die "the director's health view is not live: $health"
    stop_server
    DIR_RES+=("$r")
    log "round $round director: $r (qps, CPU us/query, completed, lost)"
done

echo
echo "| round | Knot q/s | Knot CPU µs/query | director q/s | director CPU µs/query | ratio |"
echo "|---|---|---|---|---|---|"
for ((i = 0; i < ROUNDS; i++)); do
    read -r kq kc _ _ <<<"${KNOT_RES[$i]}"
    read -r dq dc _ _ <<<"${DIR_RES[$i]}"
    awk -v r=$((i + 1)) -v kq="$kq" -v kc="$kc" -v dq="$dq" -v dc="$dc" \
        'BEGIN {printf "| %d | %d | %.2f | %d | %.2f | %.2f× |\n", r, kq, kc, dq, dc, dc / kc}'
done

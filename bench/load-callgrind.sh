#!/usr/bin/env bash
# Instructions per request of the gateway and of nginx under concurrent load, each under
# `valgrind --tool=callgrind`: what a busy proxy spends per request once many connections share
# each wake-up of its event loop (bench/callgrind.sh's mix sends one request at a time, so every
# request there pays for two waits of its own).
#
#   bench/load-callgrind.sh [--http2] [--connections N] [--duration S] [--targets meridian,nginx]
#
# Each proxy runs alone under callgrind in front of meridian-gateway-bench's fixed upstream:
# nginx with one worker and no master process, access log off, upstream keep-alive over
# HTTP/1.1 (bench/proxy.sh's proxy settings); the gateway with one worker and
# bench/callgrind.sh's config, on its plain route. wrk (h2load with --http2: cleartext HTTP/2,
# one stream at a time per connection) warms the proxy up for 3 s; then callgrind's counters
# are zeroed (`callgrind_control -z`), the load runs for the duration, and the counters are
# dumped (`callgrind_control -d`). The number is the whole process's instructions during the
# load divided by the requests the load generator completed. Runs differ by about 1 % (how
# requests batch per wake-up varies). BENCH_BIN=/path skips the build (ci-perf profile, as the
# guard). Loopback only; every load run is bounded in time; everything started here is stopped
# on exit. See docs/benchmarks.md ("Seventh round").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPSTREAM_PORT=${LOAD_CALLGRIND_UPSTREAM_PORT:-19130}
PROXY_PORT=${LOAD_CALLGRIND_PROXY_PORT:-19131}
CONNS=50
DURATION=8
TARGETS=meridian,nginx
HTTP2=0

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { log "error: $*"; exit 2; }

while (($#)); do
    case $1 in
        --http2) HTTP2=1; shift ;;
        --connections) CONNS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --targets) TARGETS=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; fail "unknown argument: $1" ;;
    esac
done
positive_ints CONNS DURATION || exit 2
((CONNS <= 1000 && DURATION <= 60)) || fail "--connections <= 1000, --duration <= 60"
IFS=, read -ra TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ $t == meridian || $t == nginx ]] || fail "unknown target '$t' (meridian, nginx)"
done

bench_install_traps
for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || fail "$tool is missing (Debian: apt-get install valgrind)"
done
if ((HTTP2)); then
    command -v h2load >/dev/null || fail "h2load is missing (Debian: apt-get install nghttp2-client)"
else
    command -v wrk >/dev/null || fail "wrk is missing (Debian: apt-get install wrk)"
fi
[[ " ${TARGET_LIST[*]} " == *" nginx "* ]] && find_nginx
make_workdir
ensure_bench_bin ci-perf || exit 2

check_port_free "$PROXY_PORT"
start_bench_upstream "$UPSTREAM_PORT"

# The gateway: bench/callgrind.sh's config (nothing that works by wall-clock time), loaded on
# its plain route.
callgrind_configs "$UPSTREAM_PORT" "$PROXY_PORT"

d=$WORKDIR/nginx
listen="listen $HOST:$PROXY_PORT backlog=4096;"
((HTTP2)) && listen="listen $HOST:$PROXY_PORT http2 backlog=4096;"
nginx_callgrind_conf "$d" "$listen" "$UPSTREAM_PORT"

URL=http://$HOST:$PROXY_PORT/api/items
# load seconds out: one bounded run of the load generator; prints the requests completed.
load() {
    local rc=0
    if ((HTTP2)); then
        h2load -t1 -c"$CONNS" -m1 -D"$1" "$URL" >"$2" 2>&1 &
    else
        wrk -t1 -c"$CONNS" -d"${1}s" "$URL" >"$2" 2>&1 &
    fi
    CURRENT_CHILD=$!
    wait "$CURRENT_CHILD" || rc=$?
    CURRENT_CHILD=""
    ((rc == 0)) || { cat "$2" >&2; fail "the load generator exited with $rc"; }
    if ((HTTP2)); then
        grep -q "^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$2" || { cat "$2" >&2; fail "non-2xx answers"; }
        awk '/^requests:/ {print $8}' "$2"
    else
        ! grep -q "Non-2xx\|Socket errors" "$2" || { cat "$2" >&2; fail "errors or non-2xx answers"; }
        awk '/requests in/ {print $1}' "$2"
    fi
}

declare -A RESULT
for t in "${TARGET_LIST[@]}"; do
    out=$WORKDIR/callgrind.$t.out plog=$WORKDIR/$t.log
    if [[ $t == meridian ]]; then
        MERIDIAN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BENCH_BIN" gateway -c "$WORKDIR/bootstrap.yaml" --workers 1 >"$plog" 2>&1 &
    else
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$plog" 2>&1 &
    fi
    pid=$!
    STARTED_PIDS+=("$pid")
    START_DEADLINE_S=120 wait_port "$PROXY_PORT" "$pid" "$t under callgrind" "$plog"
    load 3 "$WORKDIR/warmup.$t.txt" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    requests=$(load "$DURATION" "$WORKDIR/load.$t.txt")
    callgrind_control -d "$pid" >/dev/null 2>&1
    dump=$out.1 # the first dump
    total=$(awk '$1 == "totals:" || $1 == "summary:" {print $2; exit}' "$dump" 2>/dev/null || true)
    if ! [[ $total =~ ^[0-9]+$ && $requests =~ ^[1-9][0-9]*$ ]]; then
        fail "$t: no instruction total or request count ($dump, $requests)"
    fi
    RESULT[$t]=$(awk -v a="$total" -v n="$requests" 'BEGIN {printf "%.0f", a / n}')
    log "$t: $requests requests, $total instructions, ${RESULT[$t]} per request"
    callgrind_stop "$pid" "$t" "$out" "$plog" || true
done

echo
echo "| proxy ($( ((HTTP2)) && echo "h2c, h2load" || echo "HTTP/1.1, wrk") -c$CONNS, ${DURATION} s) | instructions per request |"
echo "|---|---:|"
for t in "${TARGET_LIST[@]}"; do echo "| $t | ${RESULT[$t]} |"; done
if [[ -n ${RESULT[meridian]:-} && -n ${RESULT[nginx]:-} ]]; then
    echo
    awk -v a="${RESULT[meridian]}" -v b="${RESULT[nginx]}" 'BEGIN {printf "meridian / nginx: %.2f×\n", a / b}'
fi

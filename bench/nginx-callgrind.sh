#!/usr/bin/env bash
# nginx's instructions per request under callgrind, on the request bench/callgrind.sh calls
# `get`, so the gateway's count can be compared with nginx's on the same tool and machine.
#
#   bench/nginx-callgrind.sh [--count N] [--repeats N]
#
# nginx runs as a reverse proxy the way bench/proxy.sh runs it (one worker, access log off,
# upstream keepalive over HTTP/1.1) but in the foreground without a master process, under
# `valgrind --tool=callgrind`, in front of meridian-gateway-bench's fixed upstream. The mix
# client sends `GET /api/items?page=2` N times on one keep-alive connection. Per request:
# instructions of a run with N requests minus a run with none, divided by N. There is no
# warm-up (nginx cannot answer the guard's other warm-up requests the gateway's way), so one
# connection's set-up stays in the count: well under 1 % at the default 1,000 requests.
# BENCH_BIN=/path skips the build, as in bench/callgrind.sh. Loopback only; everything started
# here is stopped on exit. See docs/benchmarks.md ("Third round").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPSTREAM_PORT=${CALLGRIND_UPSTREAM_PORT:-19120}
PROXY_PORT=${CALLGRIND_NGINX_PORT:-19121}
COUNT=1000
REPEATS=2
PROFILE=ci-perf

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { log "error: $*"; exit 2; }

while (($#)); do
    case $1 in
        --count) COUNT=${2:?}; shift 2 ;;
        --repeats) REPEATS=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; fail "unknown argument: $1" ;;
    esac
done
positive_ints COUNT REPEATS || exit 2
((COUNT <= 100000 && REPEATS <= 5)) || fail "--count <= 100000, --repeats <= 5"

bench_install_traps
command -v valgrind >/dev/null || fail "valgrind is missing (Debian: apt-get install valgrind)"
find_nginx
make_workdir

ensure_bench_bin "$PROFILE" || exit 2

check_port_free "$PROXY_PORT"
start_bench_upstream "$UPSTREAM_PORT"

d=$WORKDIR/nginx
nginx_callgrind_conf "$d" "listen $HOST:$PROXY_PORT;" "$UPSTREAM_PORT"

# measure count: sets TOTAL to the instructions (Ir) of the nginx process.
measure() {
    local count=$1 out=$WORKDIR/callgrind.out
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no --dump-line=no \
        "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    START_DEADLINE_S=120 wait_port "$PROXY_PORT" "$pid" "nginx under callgrind" "$d/error.log"
    "$BENCH_BIN" mix --addr "$HOST:$PROXY_PORT" --warmup 0 --scenario get --count "$count" \
        >"$WORKDIR/mix.json" 2>"$WORKDIR/mix.err" || { cat "$WORKDIR/mix.err" >&2; fail "the request mix failed"; }
    # SIGTERM: nginx's fast shutdown (a graceful one waits for its idle upstream connections).
    callgrind_stop "$pid" nginx "$out" "$d/stdout.log" || exit 2
}

log "nginx under callgrind: $("$NGINX" -v 2>&1), $COUNT requests of the guard's get, $REPEATS repeats"
results=()
for ((rep = 1; rep <= REPEATS; rep++)); do
    measure 0
    base=$TOTAL
    measure "$COUNT"
    pr=$(awk -v a="$TOTAL" -v b="$base" -v n="$COUNT" 'BEGIN {printf "%.0f", (a - b) / n}')
    log "repeat $rep: none $base, $COUNT requests $TOTAL: $pr per request"
    results+=("$pr")
done
printf '%s\n' "${results[@]}" | sort -g | awk '{a[NR] = $1} END {printf "nginx get: %s instructions per request (middle of %d repeats)\n", a[int((NR + 1) / 2)], NR}'

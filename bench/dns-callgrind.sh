#!/usr/bin/env bash
# The director's instructions per query under callgrind, on bench/dns.sh's config and query mix.
#
#   bench/dns-callgrind.sh [--passes N] [--warmup N] [--annotate]
#
# Starts the release director (MERIDIAN_BIN=/path skips `cargo build --release -p meridian`)
# under `valgrind --tool=callgrind`, with policies, response rate limiting and health on: three
# checkers report until every check is healthy by quorum, then stop (the verdicts stay, so every
# answer still reads them). dnsperf (one client, up to 20 queries outstanding) then sends the mix
# (simple A, latency A, weighted A, failover A, multivalue A, TXT, NXDOMAIN) --warmup times
# (default 100) and, in a second run, --warmup + --passes times (default 1000). Instructions per
# query = (second run's total − first run's) / (7 × passes), so start-up, health set-up, warm-up
# and shutdown cancel out. --annotate prints the second run's most expensive functions
# (inclusive). Loopback only; every process started here is stopped on exit.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/dns-config.sh
source "$(dirname "${BASH_SOURCE[0]}")/dns-config.sh"

PASSES=1000
WARMUP=100
ANNOTATE=0
DIRECTOR_PORT=${DIRECTOR_PORT:-19064}
DIRECTOR_HTTP=${DIRECTOR_HTTP:-19065}
MIX=7

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --passes) PASSES=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --annotate) ANNOTATE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for v in PASSES WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0 && ${!v} <= 100000)) || die "--${v,,} must be 1..100000"
done
for tool in valgrind callgrind_annotate dnsperf dig curl python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (Debian: valgrind dnsperf dnsutils curl python3)"
done

bench_install_traps
setup_cpus
ensure_meridian
make_workdir
check_port_free "$DIRECTOR_PORT"
check_port_free "$DIRECTOR_HTTP"
dns_director_config "$WORKDIR/global.yaml" "$DIRECTOR_HTTP" 1s 900ms
dns_checker_configs "$WORKDIR" "$HOST:$DIRECTOR_HTTP"
dns_queries "$WORKDIR/queries.txt"

all_healthy() {
    curl -fsS "http://$HOST:$DIRECTOR_HTTP/v1/health" 2>/dev/null | python3 -c '
import json, sys
h = json.load(sys.stdin)
checks = h.get("checks", [])
sys.exit(0 if len(checks) == 3 and all(c.get("healthy") for c in checks) and not h.get("partitioned") else 1)'
}

queries() { # passes -> completed queries (none lost)
    local out completed lost
    out=$(taskset -c "$WRK_CPU" dnsperf -s "$HOST" -p "$DIRECTOR_PORT" -d "$WORKDIR/queries.txt" -c 1 -q 20 \
        -t 30 -n "$1" 2>&1)
    completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
    lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
    [[ "$completed" == $(($1 * MIX)) && "$lost" == 0 ]] || die "dnsperf: expected $(($1 * MIX)) answers: $out"
    echo "$completed"
}

run() { # passes after warm-up -> total instructions
    local out=$WORKDIR/callgrind.$1.out pid checkers=() i p
    MERIDIAN_LOG=warn taskset -c "$TARGET_CPU" valgrind --tool=callgrind --callgrind-out-file="$out" \
        --dump-instr=no "$MERIDIAN" director -f "$WORKDIR/global.yaml" --listen "$HOST:$DIRECTOR_PORT" \
        --http "$HOST:$DIRECTOR_HTTP" --workers 1 >"$WORKDIR/director.$1.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    for ((i = 0; i < 600; i++)); do
        dig @"$HOST" -p "$DIRECTOR_PORT" api.example.com A +tries=1 +time=1 +short 2>/dev/null | grep -q . && break
        kill -0 "$pid" 2>/dev/null || die "the director exited (see $WORKDIR/director.$1.log)"
        sleep 0.2
    done
    for r in r1 r2 r3; do
        (cd "$WORKDIR" && MERIDIAN_LOG=warn exec taskset -c "$WRK_CPU" "$MERIDIAN" checker -c "checker-$r.yaml" \
            >"$WORKDIR/checker-$r.log" 2>&1) &
        checkers+=("$!")
        STARTED_PIDS+=("$!")
    done
    for ((i = 0; i < 300; i++)); do
        all_healthy && break
        sleep 0.2
    done
    all_healthy || die "the checks did not all turn healthy"
    for p in "${checkers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${checkers[@]}"; do wait "$p" 2>/dev/null || true; done
    queries "$WARMUP" >/dev/null
    if (($1 > 0)); then queries "$1" >/dev/null; fi
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

log "director under callgrind (core $TARGET_CPU), dnsperf on core $WRK_CPU: warm-up $WARMUP passes, then $PASSES passes of $MIX queries"
base=$(run 0)
total=$(run "$PASSES")
log "instructions: warm-up only $base, with $PASSES passes $total"
awk -v a="$base" -v b="$total" -v n=$((PASSES * MIX)) \
    'BEGIN {printf "director: %.0f instructions/query (%d queries)\n", (b - a) / n, n}'
if ((ANNOTATE)); then
    callgrind_annotate --inclusive=yes "$WORKDIR/callgrind.$PASSES.out" 2>/dev/null | head -70
fi

#!/usr/bin/env bash
# Compare the gateway with nginx as a reverse proxy and with the backend alone.
#
#   bench/proxy.sh [--rounds N] [--duration S] [--connections C]
#                  [--warmup S] [--c1-duration S] [--targets backend,nginx,meridian]
#                  [--workers N] [--tls] [--http2]
#
# Defaults: 3 rounds, 10 s, 50 connections, 2 s warm-up, 5 s one-connection test, all targets.
# --workers N: both proxies with N workers (nginx `worker_processes N`, gateway `--workers N`;
# still pinned to the target core; CPU and peak RSS summed over nginx's workers). --tls: both
# proxies terminate TLS with one self-signed certificate and wrk speaks HTTPS over keep-alive
# connections (one handshake per connection); the backend stays cleartext. --http2: both proxies
# take cleartext HTTP/2 (prior knowledge) and h2load (nghttp2-client) replaces wrk, one stream at
# a time per connection (`-m1`, like HTTP/1.1 keep-alive); targets nginx and meridian only, and
# h2load reports no percentiles: the p50 columns show its mean, p99 stays empty.
# MERIDIAN_BIN=/path/to/meridian skips `cargo build --release -p meridian`.
# CPU overrides: TARGET_CPU, BACKEND_CPU, WRK_CPU. BENCH_KEEP_WORKDIR=1 keeps configs/logs/wrk output.
#
# Everything listens on and targets 127.0.0.1 only; every wrk run is bounded in time; every
# process started here is killed on exit (also on Ctrl-C). See docs/benchmarks.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=10
CONNS=50
WARMUP=2
C1_DURATION=5
TARGETS=backend,nginx,meridian

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --connections) CONNS=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --c1-duration) C1_DURATION=${2:?}; shift 2 ;;
        --targets) TARGETS=${2:?}; shift 2 ;;
        --workers) PROXY_WORKERS=${2:?}; shift 2 ;;
        --tls) PROXY_TLS=1; shift ;;
        --http2) PROXY_HTTP2=1; TARGETS=${TARGETS/backend,/}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
positive_ints ROUNDS DURATION CONNS WARMUP C1_DURATION PROXY_WORKERS || exit 1
((DURATION <= 600 && C1_DURATION <= 600 && WARMUP <= 60)) || die "durations are capped at 600 s (warm-up 60 s)"
((PROXY_WORKERS <= 64)) || die "--workers is capped at 64"
((PROXY_TLS)) && SCHEME=https
IFS=, read -ra TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ $t == backend || $t == nginx || $t == meridian ]] || die "unknown target '$t' (backend, nginx, meridian)"
    if ((PROXY_HTTP2)) && [[ $t == backend ]]; then die "--http2: the backend speaks HTTP/1.1 only (targets nginx,meridian)"; fi
done
if ((PROXY_HTTP2 && PROXY_TLS)); then die "--http2 is cleartext (h2c); not with --tls"; fi
has_target() { [[ ",$TARGETS," == *",$1,"* ]]; }

bench_install_traps
ensure_tools 1
setup_cpus
if has_target meridian; then ensure_meridian; fi
make_workdir
if ((PROXY_TLS)); then make_cert; fi
CLK_TCK=$(getconf CLK_TCK)
REPORT=$WORKDIR/report.md
ROWS=$WORKDIR/rows.tsv
: >"$ROWS"

declare -A PORT PID LABEL
start_backend
PORT[backend]=$BACKEND_PORT PID[backend]=$BACKEND_PID LABEL[backend]="backend alone (nginx)"
if has_target nginx; then
    start_nginx_proxy
    PORT[nginx]=$NGINX_PORT PID[nginx]=$NGINXP_PID LABEL[nginx]="nginx proxy"
fi
if has_target meridian; then
    start_meridian
    PORT[meridian]=$MERIDIAN_PORT PID[meridian]=$MERIDIAN_PID LABEL[meridian]="meridian"
fi
declare -A URL
URL[backend]=http://$HOST:$BACKEND_PORT/
for t in "${TARGET_LIST[@]}"; do
    [[ $t == backend ]] || URL[$t]=$SCHEME://$HOST:${PORT[$t]}/
    check_target "$t" "${PORT[$t]}" "${URL[$t]%%:*}"
done
declare -A TLS_SESSION
if ((PROXY_TLS)); then
    for t in "${TARGET_LIST[@]}"; do
        [[ $t == backend ]] || TLS_SESSION[$t]=$(tls_session "${PORT[$t]}")
    done
fi

emit() { tee -a "$REPORT"; }

# The process under test always runs on TARGET_CPU. The backend normally lives on BACKEND_CPU
# (with wrk on 2-core machines); when the backend itself is the target it is moved to
# TARGET_CPU for its run and moved back afterwards.
pin_backend() { taskset -a -pc "$1" "$BACKEND_PID" >/dev/null; }

# busy ticks (user+nice+system) of one CPU from /proc/stat
cpu_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4}' /proc/stat; }

# awk: a duration as wrk and h2load print it (us, ms, s, m) -> microseconds
AWK_US='
    function us(v) {
        if (v ~ /us$/) return v + 0
        if (v ~ /ms$/) return (v + 0) * 1000
        if (v ~ /s$/) return (v + 0) * 1000000
        if (v ~ /m$/) return (v + 0) * 60000000
        return v + 0
    }'

# wrk output -> "rps p50_us p99_us requests socket_errors non2xx"
parse_wrk() {
    awk "$AWK_US"'
    /^ *50% / { p50 = us($2) }
    /^ *99% / { p99 = us($2) }
    / requests in / { req = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { non2xx = $5 }
    END {
        if (req == "" || rps == "") exit 1
        printf "%s %s %s %s %d %d\n", rps, p50, p99, req, err, non2xx
    }' "$1"
}

# h2load output -> the same fields; p50 is h2load's mean, p99 "nan" (it prints no percentiles);
# failed or errored requests count as socket errors.
parse_h2load() {
    awk "$AWK_US"'
    /^finished in / { rps = $4 }
    /^requests: / { req = $8; err = $10 + $12 + $14 }
    /^status codes: / { non2xx = $5 + $7 + $9 }
    /^time for request:/ { mean = us($6) }
    END {
        if (req == "" || rps == "") exit 1
        printf "%s %s nan %s %d %d\n", rps, mean, req, err, non2xx
    }' "$1"
}

# utime+stime (clock ticks) and peak RSS (kB) summed over the processes of a target (nginx with
# several workers: all of them).
sum_ticks() { local p n=0; for p in $1; do n=$((n + $(cpu_ticks "$p"))); done; echo "$n"; }
sum_hwm() { local p n=0; for p in $1; do n=$((n + $(proc_kb "$p" VmHWM))); done; echo "$n"; }

# measure round target kind(load|c1|warmup) connections seconds
measure() {
    local round=$1 t=$2 kind=$3 c=$4 d=$5
    local pids=${PID[$t]} out=$WORKDIR/wrk-r$1-$2-$3.txt p
    local t0 t1 b0 b1 w0 w1 rc=0
    t0=$(sum_ticks "$pids") b0=$(cpu_busy "$TARGET_CPU") w0=$(date +%s%N)
    if ((PROXY_HTTP2)); then
        taskset -c "$WRK_CPU" h2load -t1 -c"$c" -m1 -D"$d" "${URL[$t]}" >"$out" 2>&1 &
    else
        taskset -c "$WRK_CPU" wrk -t1 -c"$c" -d"${d}s" --latency "${URL[$t]}" >"$out" 2>&1 &
    fi
    CURRENT_CHILD=$!
    wait "$CURRENT_CHILD" || rc=$?
    CURRENT_CHILD=""
    t1=$(sum_ticks "$pids" 2>/dev/null || echo 0) b1=$(cpu_busy "$TARGET_CPU") w1=$(date +%s%N)
    for p in $pids; do kill -0 "$p" 2>/dev/null || die "$t (pid $p) died during the run"; done
    ((rc == 0)) || { cat "$out" >&2; die "the load generator against $t exited with $rc"; }
    if [[ $kind == warmup ]]; then return 0; fi
    local parsed
    if ((PROXY_HTTP2)); then
        parsed=$(parse_h2load "$out") || { cat "$out" >&2; die "could not parse h2load output for $t"; }
    else
        parsed=$(parse_wrk "$out") || { cat "$out" >&2; die "could not parse wrk output for $t"; }
    fi
    local rps p50 p99 req err non2xx
    read -r rps p50 p99 req err non2xx <<<"$parsed"
    ((err + non2xx == 0)) || log "WARNING: $t $kind: $err socket errors, $non2xx non-2xx responses (see $out)"
    local hwm
    hwm=$(sum_hwm "$pids")
    # cpu_s, µs/request, % of one core, other activity on the target's core (%), peak RSS MiB
    awk -v r="$round" -v t="$t" -v k="$kind" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v req="$req" \
        -v dt=$((t1 - t0)) -v db=$((b1 - b0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) -v hwm="$hwm" \
        -v err="$err" -v non2xx="$non2xx" 'BEGIN {
            wall = ns / 1e9; cpu = dt / hz
            other = (db - dt) / hz / wall * 100; if (other < 0) other = 0
            printf "%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%d\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%d\t%d\n",
                r, t, k, rps, p50, p99, req, cpu, cpu * 1e6 / req, cpu / wall * 100, other, hwm / 1024, err, non2xx
        }' >>"$ROWS"
}
# ROWS columns: 1 round 2 target 3 kind 4 rps 5 p50_us 6 p99_us 7 requests 8 cpu_s 9 cpu_us_per_req
#               10 cpu_pct 11 other_pct_on_target_core 12 peak_rss_mib 13 socket_errors 14 non2xx

col() { # round(*=all) target kind column -> values, one a line
    awk -F'\t' -v r="$1" -v t="$2" -v k="$3" -v c="$4" '($1 == r || r == "*") && $2 == t && $3 == k {print $c}' "$ROWS"
}
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
val() { col "$@" | median; } # round target kind column
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0 && a != "nan") printf "%.2f×", a / b; else print "–"}'; }
fmt() { awk -v v="$1" -v p="${2:-0}" 'BEGIN {if (v == "nan") print "–"; else printf "%.*f", p, v}'; }

table() { # round(*=median of all rounds)
    local r=$1 t nginx_cpu="nan"
    has_target nginx && nginx_cpu=$(val "$r" nginx load 9)
    echo
    echo "| target | req/s | p50 µs | p99 µs | CPU µs/req | ratio to nginx | CPU % of a core | other load on its core % | peak RSS MiB | errors | 1-conn p50 µs | 1-conn p99 µs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in "${TARGET_LIST[@]}"; do
        local cpu
        cpu=$(val "$r" "$t" load 9)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" \
            "$(fmt "$(val "$r" "$t" load 4)")" "$(fmt "$(val "$r" "$t" load 5)")" "$(fmt "$(val "$r" "$t" load 6)")" \
            "$(fmt "$cpu" 2)" "$(ratio "$cpu" "$nginx_cpu")" "$(fmt "$(val "$r" "$t" load 10)")" \
            "$(fmt "$(val "$r" "$t" load 11)")" "$(fmt "$(val "$r" "$t" load 12)" 1)" \
            "$(col "$r" "$t" load 13 | awk '{s += $1} END {print s + 0}')/$(col "$r" "$t" load 14 | awk '{s += $1} END {print s + 0}')" \
            "$(fmt "$(val "$r" "$t" c1 5)")" "$(fmt "$(val "$r" "$t" c1 6)")"
    done
}

added() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "nan" || b == "nan") print "–"; else printf "%+.0f", a - b}'; }

c1_table() { # median one-connection latency and what each proxy adds to the backend alone
    local bp50 bp99
    bp50=$(val '*' backend c1 5) bp99=$(val '*' backend c1 6)
    echo
    echo "| target | 1-conn req/s | p50 µs | p99 µs | p50 added vs backend alone µs | p99 added µs | CPU µs/req at 1 conn |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in "${TARGET_LIST[@]}"; do
        local p50 p99
        p50=$(val '*' "$t" c1 5) p99=$(val '*' "$t" c1 6)
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "$(fmt "$(val '*' "$t" c1 4)")" \
            "$(fmt "$p50")" "$(fmt "$p99")" \
            "$(added "$p50" "$bp50")" "$(added "$p99" "$bp99")" \
            "$(fmt "$(val '*' "$t" c1 9)" 2)"
    done
}

{
    echo "# Proxy benchmark $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    tls_flag=""
    ((PROXY_TLS)) && tls_flag=" --tls"
    ((PROXY_HTTP2)) && tls_flag=" --http2"
    echo "Command: \`bench/proxy.sh --rounds $ROUNDS --duration $DURATION --connections $CONNS --warmup $WARMUP --c1-duration $C1_DURATION --targets $TARGETS --workers $PROXY_WORKERS$tls_flag\`"
    echo
    machine_info
    echo "- Proxies: $PROXY_WORKERS worker(s) each (nginx \`worker_processes $PROXY_WORKERS\`, gateway \`--workers $PROXY_WORKERS\`), client side $( ((PROXY_TLS)) && echo "TLS (one self-signed P-256 certificate; backend cleartext)" || echo cleartext), HTTP/1.1 keep-alive"
    for t in "${!TLS_SESSION[@]}"; do echo "- TLS as an OpenSSL client negotiates it with $t: ${TLS_SESSION[$t]}"; done
    if ((PROXY_HTTP2)); then
        echo "- Per target and round: ${WARMUP} s warm-up, then \`h2load -t1 -c$CONNS -m1 -D$DURATION\`, then \`h2load -t1 -c1 -m1 -D$C1_DURATION\` (cleartext HTTP/2 with prior knowledge; p50 columns: h2load's mean)"
    else
        echo "- Per target and round: ${WARMUP} s warm-up, then \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`, then \`wrk -t1 -c1 -d${C1_DURATION}s --latency\`"
    fi
    echo "- CPU = utime+stime of the process under test (nginx: its worker; meridian: the whole process) from /proc/PID/stat, CLK_TCK=$CLK_TCK"
    echo "- Peak RSS = VmHWM of the same process (high-water mark since it started, so it only grows across rounds)"
    echo "- \"other load on its core\" = busy time of CPU $TARGET_CPU from /proc/stat not accounted to the process under test (other jobs, interrupts); high values mean a noisy run"
} | emit

for ((round = 1; round <= ROUNDS; round++)); do
    for t in "${TARGET_LIST[@]}"; do
        if [[ $t == backend ]]; then pin_backend "$TARGET_CPU"; fi
        log "round $round/$ROUNDS: $t (:${PORT[$t]}) warm-up ${WARMUP}s, load ${DURATION}s x ${CONNS} conns, 1-conn ${C1_DURATION}s"
        measure "$round" "$t" warmup "$CONNS" "$WARMUP"
        measure "$round" "$t" load "$CONNS" "$DURATION"
        measure "$round" "$t" c1 1 "$C1_DURATION"
        if [[ $t == backend ]]; then pin_backend "$BACKEND_CPU"; fi
    done
    { echo; echo "## Round $round"; table "$round"; } | emit
done

{
    echo
    echo "## Summary: median of $ROUNDS rounds ($CONNS connections, ${DURATION} s each)"
    table '*'
    echo
    echo "## One connection: added latency (median of $ROUNDS rounds, ${C1_DURATION} s each)"
    c1_table
    echo
    echo "- Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | emit

mkdir -p "$BENCH_DIR/results"
RESULT=$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ).md
{
    cat "$REPORT"
    echo
    echo "## Raw rows"
    echo
    echo '```'
    printf 'round\ttarget\tkind\trps\tp50_us\tp99_us\trequests\tcpu_s\tcpu_us_per_req\tcpu_pct\tother_pct\tpeak_rss_mib\tsocket_errors\tnon2xx\n'
    cat "$ROWS"
    echo '```'
} >"$RESULT"
log "results written to ${RESULT#"$REPO_ROOT"/}"

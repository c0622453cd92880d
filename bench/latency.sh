#!/usr/bin/env bash
# Latency at one connection, the gateway against nginx and the backend alone, measured so that
# the machine's noise cancels: the client takes turns between the targets one request at a time.
#
#   bench/latency.sh [--rounds N] [--count N] [--block N] [--http2]
#                    [--targets backend,nginx,meridian]
#
# The processes of bench/proxy.sh: the nginx backend on its own core; on the target core the
# nginx proxy (one worker, upstream keep-alive, access log off) and the gateway (quick mode, one
# worker). nginx-headers (port NGINX_HEADERS_PORT, default 19003) is that nginx proxy putting
# the gateway's fields on the wire as well, as constant strings of the same sizes (nginx's
# cheapest way): X-Forwarded-Proto, -Host, -For, Forwarded, Via and X-Request-Id to the backend;
# x-meridian-region, Via and X-Request-Id to the client. It compares the two proxies' own work
# at equal bytes (plain nginx is the comparison issue 6 sets); run it without the plain nginx
# proxy (`--targets backend,nginx-headers,meridian`): two nginx proxies on one core share their
# code in its caches, which favours whichever runs right after the other.
#
# The client, `meridian-gateway-bench latency` (BENCH_BIN, or built in the ci-perf profile),
# holds one keep-alive connection per target and sends `GET /` on each in turn (--block N
# requests per turn, default 1), the targets in a random order each time; --count turns per
# round (default 100,000: about 45 s for three targets) after 1,000 unmeasured ones. Per
# round: each target's percentiles and, per pair, the median of the per-turn differences with
# a distribution-free 95 % confidence interval, and how often the second of the pair answered
# first. A drift of the machine's speed (other jobs, clock frequency, the hypervisor) lasts far
# longer than one turn and lands on every target alike; separate timed runs (wrk -c1, one
# target after another) do not have that property. Defaults: 3 rounds. --http2: the client
# speaks cleartext HTTP/2 (prior knowledge; hyper's client, one stream at a time) to both
# proxies; their upstream side stays HTTP/1.1 keep-alive; no backend target (HTTP/1.1 only).
# MERIDIAN_BIN=/path skips `cargo build --release -p meridian`; MERIDIAN_B_BIN=/path adds the
# target meridian-b (port MERIDIAN_B_PORT, default 19004): another gateway binary run the same
# way, to compare two builds.
# Loopback only; every round is bounded in requests; everything started here is stopped on exit.
# See docs/benchmarks.md ("Tenth round").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
COUNT=100000
BLOCK=1
TARGETS=backend,nginx,meridian
NGINX_HEADERS_PORT=${NGINX_HEADERS_PORT:-19003}
MERIDIAN_B_PORT=${MERIDIAN_B_PORT:-19004}

usage() { sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --count) COUNT=${2:?}; shift 2 ;;
        --block) BLOCK=${2:?}; shift 2 ;;
        --http2) PROXY_HTTP2=1; TARGETS=${TARGETS/backend,/}; shift ;;
        --targets) TARGETS=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
positive_ints ROUNDS COUNT BLOCK || exit 1
if [[ -n "${MERIDIAN_B_BIN:-}" ]]; then
    [[ -x "$MERIDIAN_B_BIN" ]] || die "MERIDIAN_B_BIN=$MERIDIAN_B_BIN is not an executable"
    TARGETS+=,meridian-b
fi
((ROUNDS <= 20 && COUNT * BLOCK <= 2000000)) || die "--rounds <= 20, --count x --block <= 2,000,000"
IFS=, read -ra TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ $t == backend || $t == nginx || $t == meridian || $t == nginx-headers || $t == meridian-b ]] ||
        die "unknown target '$t' (backend, nginx, meridian, nginx-headers)"
    if ((PROXY_HTTP2)) && [[ $t == backend ]]; then die "--http2: the backend speaks HTTP/1.1 only"; fi
done
has_target() { [[ ",$TARGETS," == *",$1,"* ]]; }

bench_install_traps
ensure_tools 0
if ((PROXY_HTTP2)) && ! command -v h2load >/dev/null; then # check_target's HTTP/2 request
    apt_install nghttp2-client || die "h2load is missing (Debian: apt-get install nghttp2-client)"
fi
setup_cpus
ensure_bench_bin ci-perf || exit 1
if has_target meridian; then ensure_meridian; fi
make_workdir

# nginx as bench/proxy.sh runs it, plus the gateway's fields as constants (see the top).
start_nginx_headers() {
    local d=$WORKDIR/nginx-headers host="$HOST:$MERIDIAN_PORT" id=4eef14f22c17aee4d13270bb08acb37a
    mkdir -p "$d/tmp"
    check_port_free "$NGINX_HEADERS_PORT"
    local fields="            proxy_set_header Host \"$host\";
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host \"$host\";
            proxy_set_header X-Forwarded-For $HOST;
            proxy_set_header Forwarded 'for=$HOST;proto=http;host=\"$host\"';
            proxy_set_header Via '1.1 meridian';
            proxy_set_header X-Request-Id $id;
            add_header x-meridian-region local;
            add_header Via '1.1 meridian';
            add_header X-Request-Id $id;"
    {
        nginx_common_conf "$d"
        echo "http {"
        nginx_http_common "$d"
        local http2=""
        ((PROXY_HTTP2)) && http2=" http2"
        nginx_proxy_blocks "listen $HOST:$NGINX_HEADERS_PORT$http2 backlog=4096;" "$BACKEND_PORT" "$fields"
        echo "}"
    } >"$d/nginx.conf"
    launch_nginx nginx-headers "$TARGET_CPU" "$NGINX_HEADERS_PORT"
    log "nginx    proxy with the gateway's fields on $HOST:$NGINX_HEADERS_PORT  master $LAUNCHED_PID  cpu $TARGET_CPU"
}

declare -A PORT
start_backend
PORT[backend]=$BACKEND_PORT
if has_target nginx; then start_nginx_proxy; PORT[nginx]=$NGINX_PORT; fi
if has_target meridian; then start_meridian; PORT[meridian]=$MERIDIAN_PORT; fi
if has_target nginx-headers; then start_nginx_headers; PORT[nginx-headers]=$NGINX_HEADERS_PORT; fi
if has_target meridian-b; then
    # start_meridian again, with the other binary and port.
    saved=("$MERIDIAN" "$MERIDIAN_PORT" "${MERIDIAN_PID:-}")
    MERIDIAN=$MERIDIAN_B_BIN MERIDIAN_PORT=$MERIDIAN_B_PORT
    start_meridian meridian-b
    PORT[meridian-b]=$MERIDIAN_B_PORT
    MERIDIAN=${saved[0]} MERIDIAN_PORT=${saved[1]} MERIDIAN_PID=${saved[2]}
fi
client_args=()
for t in "${TARGET_LIST[@]}"; do
    check_target "$t" "${PORT[$t]}"
    client_args+=(--target "$t=$HOST:${PORT[$t]}")
done
((PROXY_HTTP2)) && client_args+=(--http2)

REPORT=$WORKDIR/report.md
emit() { tee -a "$REPORT"; }
{
    echo "# One-connection latency, interleaved $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`bench/latency.sh --rounds $ROUNDS --count $COUNT --block $BLOCK --targets $TARGETS$( ((PROXY_HTTP2)) && echo " --http2")\`"
    echo
    machine_info | sed "s/; wrk on CPU $WRK_CPU/; the client on CPU $WRK_CPU/"
    echo "- Client: \`meridian-gateway-bench latency\` ($BENCH_BIN), one keep-alive connection per target ($( ((PROXY_HTTP2)) && echo "cleartext HTTP/2" || echo "HTTP/1.1")), \`GET /\` on each in turn ($BLOCK per turn), $COUNT turns per round after 1,000 unmeasured"
} | emit

ALL=$WORKDIR/all.txt
: >"$ALL"
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round/$ROUNDS: $COUNT turns over ${TARGETS}"
    out=$WORKDIR/round-$round.txt
    taskset -c "$WRK_CPU" "$BENCH_BIN" latency "${client_args[@]}" --count "$COUNT" --block "$BLOCK" >"$out" &
    CURRENT_CHILD=$!
    wait "$CURRENT_CHILD" || die "the latency client failed in round $round"
    CURRENT_CHILD=""
    sed "s/^/$round /" "$out" >>"$ALL"
    {
        echo
        echo "## Round $round"
        echo
        echo "| target | requests | p50 µs | p90 µs | p99 µs | p99.9 µs | mean µs | p50 added over the backend |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        awk '$1 == "target" { p50[$2] = $4; line[++n] = $0 }
            END {
                for (i = 1; i <= n; i++) {
                    split(line[i], f, " ")
                    added = ("backend" in p50 && f[2] != "backend") ? sprintf("%+.1f µs", f[4] - p50["backend"]) : "–"
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5], f[6], f[7], f[8], added
                }
            }' "$out"
        echo
        echo "| pair (second − first) | turns | median difference µs | 95 % interval µs | second answered first |"
        echo "|---|---:|---:|---:|---:|"
        awk '$1 == "paired" { printf "| %s − %s | %s | %+.2f | %+.2f … %+.2f | %.1f %% |\n", $3, $2, $4, $5, $6, $7, $8 * 100 }' "$out"
    } | emit
done

{
    echo
    echo "## Summary: median of the $ROUNDS rounds"
    echo
    echo "| target | p50 µs | p99 µs | p50 added over the backend |"
    echo "|---|---:|---:|---:|"
    awk -v rounds="$ROUNDS" '
        function median(s,   a, n, i, j, t) {
            n = split(s, a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $2 == "target" { if (!($3 in p50)) order[++n] = $3; p50[$3] = p50[$3] " " $5; p99[$3] = p99[$3] " " $7 }
        $2 == "paired" { k = $4 " − " $3; if (!(k in d)) porder[++m] = k; d[k] = d[k] " " $6; hi[k] = hi[k] " " $8 }
        END {
            for (i = 1; i <= n; i++) {
                t = order[i]
                added = ("backend" in p50 && t != "backend") ? sprintf("%+.1f µs", median(p50[t]) - median(p50["backend"])) : "–"
                printf "| %s | %.1f | %.1f | %s |\n", t, median(p50[t]), median(p99[t]), added
            }
            print ""
            print "| pair (second − first) | median of the rounds'\'' median differences µs | largest upper 95 % bound µs |"
            print "|---|---:|---:|"
            for (i = 1; i <= m; i++) {
                k = porder[i]; split(hi[k], h, " "); top = h[1]
                for (j in h) if (h[j] + 0 > top + 0) top = h[j]
                printf "| %s | %+.2f | %+.2f |\n", k, median(d[k]), top
            }
        }' "$ALL"
    echo
    echo "- Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | emit

mkdir -p "$BENCH_DIR/results"
RESULT=$BENCH_DIR/results/latency-$(date -u +%Y%m%dT%H%M%SZ).md
cp "$REPORT" "$RESULT"
log "results written to ${RESULT#"$REPO_ROOT"/}"

#!/usr/bin/env bash
# Writes link/order.txt: the functions a running gateway executes, which optimised builds ask the
# linker to lay out together (link/build.rs). Times nothing.
#
#   bench/link-order.sh [--check] [--only-meridian] [--out FILE]
#
# Builds the two binaries that serve, in the production profile: meridian-gateway-bench
# (`cargo build -p meridian-gateway`, what bench/proxy.sh and bench/idle-rss.sh run) and
# meridian (`cargo build -p meridian`, what deployments run; needs protoc). Their symbol names
# differ (each build resolves its own dependency features), so the file lists both.
# BENCH_BIN=/path and MERIDIAN_BIN=/path skip the builds. Each binary runs as a gateway under
# `valgrind --tool=callgrind --dump-instr=yes` twice, from start-up to SIGTERM:
# - from bench/callgrind.sh's config files, access log on: the request mix (plain, POST, not
#   found, CORS and header policies), 200 more plain requests, two HTTP/2 requests (curl);
# - in quick mode (`gateway --listen --upstream`) in front of bench/proxy.sh's nginx backend:
#   HTTP/1.1 GETs (one with `Connection: keep-alive`), a POST, 1,000 keep-alive connections
#   held idle for a second (bench/idle-rss.sh's client), two HTTP/2 requests.
# Every function either run executed goes in the file, the most executed first; then the code
# that runs natively in place of what ran under valgrind: sha2's SHA-NI path (valgrind's CPU
# has no SHA extensions) and the whole of mimalloc (78 KiB; more memory churn than a profile
# makes takes other paths through it).
#
# Prints, per binary, how many functions ran and how many 64 KiB runs of its code they touch
# (the kernel maps code into a process in 64 KiB runs around each page fault). --check writes
# nothing: it reports those numbers for the binaries as built, to see whether the order holds.
# --only-meridian profiles MERIDIAN_BIN alone (the bench binary still plays upstream and
# client); --out writes FILE instead of link/order.txt (bench/pgo-build.sh: the order of its
# profile-guided build, passed to the link as MERIDIAN_LINK_ORDER_FILE).
# Loopback only; every process started here is stopped on exit. See docs/benchmarks.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPSTREAM_PORT=${LINK_ORDER_UPSTREAM_PORT:-19120}
GATEWAY_PORT=${LINK_ORDER_GATEWAY_PORT:-19121}
CHECK=0
ONLY_MERIDIAN=0
OUT=$REPO_ROOT/link/order.txt
usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --check) CHECK=1; shift ;;
        --only-meridian) ONLY_MERIDIAN=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

bench_install_traps
for tool in valgrind curl nm python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (Debian: valgrind curl binutils python3)"
done
ensure_tools 0
setup_cpus
make_workdir

# --- the binaries (production profile) -------------------------------------------------------
ensure_bench_bin production || exit 1
if [[ -z "${MERIDIAN_BIN:-}" ]]; then
    log "building: cargo build --locked --profile production -p meridian"
    (cd "$REPO_ROOT" && cargo build --locked --profile production -p meridian >&2) || die "cargo build failed"
    MERIDIAN_BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/production/meridian
fi
[[ -x "$MERIDIAN_BIN" ]] || die "MERIDIAN_BIN=$MERIDIAN_BIN is not an executable"
BENCH_BIN=$(readlink -f "$BENCH_BIN")
MERIDIAN_BIN=$(readlink -f "$MERIDIAN_BIN")

start_bench_upstream "$UPSTREAM_PORT"
start_backend
callgrind_configs "$UPSTREAM_PORT" "$GATEWAY_PORT"
URL=http://$HOST:$GATEWAY_PORT

# requests mode pid: what the gateway serves during a profile.
requests() {
    if [[ $1 == file ]]; then
        "$BENCH_BIN" mix --addr "$HOST:$GATEWAY_PORT" --warmup 5 --count 200 >/dev/null ||
            die "the request mix failed"
    else
        curl -fsS -o /dev/null "$URL/" -o /dev/null "$URL/api/items" || die "curl (HTTP/1.1) failed"
        curl -fsS -o /dev/null -H 'Connection: keep-alive' "$URL/" || die "curl (HTTP/1.1) failed"
        curl -fsS -o /dev/null -X POST --data-binary "@$WORKDIR/global.yaml" "$URL/api/items" ||
            die "curl (POST) failed"
        python3 "$BENCH_DIR/idle_conns.py" --port "$GATEWAY_PORT" --pid "$2" --conns 1000 --hold 1 \
            >/dev/null || die "idle connections failed"
    fi
    # One request per curl: curl 7.88 fails a second HTTP/2 request on a reused connection
    # ("Error in the HTTP2 framing layer"), against nginx too.
    local i
    for i in 1 2; do
        curl -fsS --http2-prior-knowledge -o /dev/null "$URL/api/items" || die "curl (HTTP/2) failed"
    done
}

# profile binary mode out: one gateway under callgrind, from start-up to SIGTERM.
profile() {
    local bin=$1 mode=$2 out=$3 glog=$WORKDIR/gateway.log args
    if [[ $mode == file ]]; then
        args=(gateway -c "$WORKDIR/bootstrap-log.yaml" --workers 1)
    else
        args=(gateway --listen "$HOST:$GATEWAY_PORT" --upstream "$HOST:$BACKEND_PORT" --admin "$HOST:0" --workers 1)
    fi
    check_port_free "$GATEWAY_PORT"
    MERIDIAN_LOG=warn valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out" \
        "$bin" "${args[@]}" >"$glog" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    START_DEADLINE_S=120 wait_port "$GATEWAY_PORT" "$pid" "gateway under callgrind" "$glog"
    requests "$mode" "$pid"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 120))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "the gateway did not stop within 120 s of SIGTERM"
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    [[ -s $out ]] || { tail -n 20 "$glog" >&2; die "no profile from $bin ($mode)"; }
}

args=(--with '^sha2::sha256::x86::' --with '^_?mi_')
binaries=("$BENCH_BIN" "$MERIDIAN_BIN")
((ONLY_MERIDIAN)) && binaries=("$MERIDIAN_BIN")
for bin in "${binaries[@]}"; do
    args+=(--binary "$bin")
    for mode in file quick; do
        out=$WORKDIR/callgrind.$(basename "$bin").$mode.out
        log "profiling $(basename "$bin") ($mode)"
        profile "$bin" "$mode" "$out"
        args+=("$out")
    done
done
((CHECK)) || args+=(--order-out "$OUT")
python3 "$BENCH_DIR/link_order.py" "${args[@]}"

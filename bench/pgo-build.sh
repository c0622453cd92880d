#!/usr/bin/env bash
# A profile-guided (PGO) production build of `meridian`: the production profile (fat LTO, one
# codegen unit, the link order of link/order.txt) compiled once more with the branch and call
# counts of a gateway under a training load, so that LLVM lays out each function's hot path
# together and keeps the code that the load never ran out of its way.
#
#   bench/pgo-build.sh [--seconds S]
#
# 1. llvm-profdata matching rustc's LLVM: `rustup component add llvm-tools` (downloads it once).
# 2. An instrumented build (RUSTFLAGS=-Cprofile-generate, target dir target/pgo-generate).
# 3. Training: that gateway (one worker) with bench/callgrind.sh's config (a plain route and a
#    route with CORS and a headers policy, access log to a file) in front of bench/proxy.sh's
#    nginx backend, loaded by wrk (1 and 50 connections, plain and CORS routes) and h2load
#    (cleartext HTTP/2, 1 and 50 connections), S seconds each (default 3); then stopped, which
#    writes its profile.
# 4. `llvm-profdata merge`, and the build with RUSTFLAGS=-Cprofile-use (target dir target/pgo).
# 5. A link order for that build: bench/link-order.sh --only-meridian on it writes
#    target/pgo/order.txt (its inlining gives it other functions than link/order.txt names),
#    and the binary is linked again with it (MERIDIAN_LINK_ORDER_FILE, link/build.rs).
#
# Prints the path of the binary: target/pgo/x86_64-unknown-linux-gnu/production/meridian.
# Needs nginx, wrk and h2load (installed as bench/proxy.sh does), and valgrind for step 5;
# BENCH_BIN=/path skips building meridian-gateway-bench (ci-perf), the upstream and client
# of step 5. Loopback only; every load
# run is bounded in time; everything started here is stopped on exit. See docs/benchmarks.md
# ("Tenth round").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=3
GATEWAY_PORT=${PGO_GATEWAY_PORT:-19170}

usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --seconds) SECONDS_EACH=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
positive_ints SECONDS_EACH || exit 1
((SECONDS_EACH <= 60)) || die "--seconds <= 60"

bench_install_traps
PROXY_HTTP2=1 ensure_tools 1
setup_cpus
command -v valgrind >/dev/null || die "valgrind is missing (Debian: apt-get install valgrind)"
command -v rustup >/dev/null || die "rustup is missing: PGO needs the llvm-tools component of rustc's toolchain"
rustup component add llvm-tools >&2 || die "rustup component add llvm-tools failed"
HOST_TRIPLE=$(rustc -vV | awk '/^host:/ {print $2}')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST_TRIPLE/bin/llvm-profdata
[[ -x "$PROFDATA" ]] || die "llvm-profdata not found at $PROFDATA"

ensure_bench_bin ci-perf || exit 1
make_workdir
# A fixed path: it is part of the instrumented build's flags, so an unchanged tree is not
# rebuilt. The profile-use path below is new every run: cargo does not track that file's
# contents, and a fresh profile must reach every crate.
PROFILES=$REPO_ROOT/target/pgo-generate/profiles
# --target: RUSTFLAGS then reach only the binary's crates, not build scripts and proc macros.
build() { # target-dir rustflags
    log "building: RUSTFLAGS='$2' cargo build --locked --profile production -p meridian --target $HOST_TRIPLE (target dir $1)"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$1 RUSTFLAGS=$2 \
        cargo build --locked --profile production -p meridian --target "$HOST_TRIPLE" >&2) ||
        die "cargo build failed"
}
build "$REPO_ROOT/target/pgo-generate" "-Cprofile-generate=$PROFILES"
MERIDIAN=$REPO_ROOT/target/pgo-generate/$HOST_TRIPLE/production/meridian

start_backend
callgrind_configs "$BACKEND_PORT" "$GATEWAY_PORT"
check_port_free "$GATEWAY_PORT"
rm -rf "$PROFILES"
MERIDIAN_LOG=warn taskset -c "$TARGET_CPU" "$MERIDIAN" gateway -c "$WORKDIR/bootstrap-log.yaml" --workers 1 \
    >"$WORKDIR/gateway.log" 2>&1 &
GATEWAY_PID=$!
STARTED_PIDS+=("$GATEWAY_PID")
wait_port "$GATEWAY_PORT" "$GATEWAY_PID" gateway "$WORKDIR/gateway.log"

load() { # what command...
    local what=$1
    shift
    log "training: $what (${SECONDS_EACH} s)"
    taskset -c "$WRK_CPU" "$@" >"$WORKDIR/load.txt" 2>&1 &
    CURRENT_CHILD=$!
    wait "$CURRENT_CHILD" || { cat "$WORKDIR/load.txt" >&2; die "training load '$what' failed"; }
    CURRENT_CHILD=""
}
BASE=http://$HOST:$GATEWAY_PORT
load "HTTP/1.1, 1 connection" wrk -t1 -c1 -d"${SECONDS_EACH}s" "$BASE/api/items?page=2"
load "HTTP/1.1, 50 connections" wrk -t1 -c50 -d"${SECONDS_EACH}s" "$BASE/api/items?page=2"
load "HTTP/1.1, CORS and headers policy" wrk -t1 -c50 -d"${SECONDS_EACH}s" -H "Origin: http://localhost:3000" "$BASE/web/items"
load "HTTP/2, 1 connection" h2load -c1 -m1 -D"$SECONDS_EACH" "$BASE/api/items?page=2"
load "HTTP/2, 50 connections" h2load -c50 -m1 -D"$SECONDS_EACH" "$BASE/api/items?page=2"
kill -TERM "$GATEWAY_PID"
wait "$GATEWAY_PID" || die "the instrumented gateway did not stop cleanly (see $WORKDIR/gateway.log)"
compgen -G "$PROFILES/*.profraw" >/dev/null || die "the instrumented gateway wrote no profile"
"$PROFDATA" merge -o "$WORKDIR/merged.profdata" "$PROFILES" || die "llvm-profdata merge failed"

# The backend's port is link-order.sh's too.
kill -TERM "$BACKEND_MASTER"
wait "$BACKEND_MASTER" 2>/dev/null || true

build "$REPO_ROOT/target/pgo" "-Cprofile-use=$WORKDIR/merged.profdata"
PGO_BIN=$REPO_ROOT/target/pgo/$HOST_TRIPLE/production/meridian
ORDER=$REPO_ROOT/target/pgo/order.txt
log "ordering: bench/link-order.sh --only-meridian --out $ORDER"
BENCH_BIN=$BENCH_BIN MERIDIAN_BIN=$PGO_BIN "$BENCH_DIR/link-order.sh" --only-meridian --out "$ORDER" >&2 ||
    die "bench/link-order.sh failed"
export MERIDIAN_LINK_ORDER_FILE=$ORDER
build "$REPO_ROOT/target/pgo" "-Cprofile-use=$WORKDIR/merged.profdata"
log "PGO build: $PGO_BIN"
echo "$PGO_BIN"

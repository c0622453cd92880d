# shellcheck shell=bash
# Shared helpers of the bench scripts. Sourced, not run.
#
# Everything binds to and targets 127.0.0.1 only. Every process started here is recorded
# in STARTED_PIDS and killed by `bench_cleanup` (installed as an EXIT/INT/TERM trap).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
HOST=127.0.0.1
BACKEND_PORT=${BACKEND_PORT:-19000}
NGINX_PORT=${NGINX_PORT:-19001}
MERIDIAN_PORT=${MERIDIAN_PORT:-19002}
START_DEADLINE_S=${START_DEADLINE_S:-20}

STARTED_PIDS=()
CURRENT_CHILD="" # a running load generator / client, killed on exit too
WORKDIR=""
NGINX=""
MERIDIAN=""
# The proxies under test (nginx proxy and the gateway; the backend always has one worker):
# PROXY_WORKERS worker processes/threads; PROXY_TLS=1 terminates TLS on their client side with
# one self-signed certificate (make_cert), keep-alive as in cleartext.
PROXY_WORKERS=${PROXY_WORKERS:-1}
PROXY_TLS=${PROXY_TLS:-0}
# PROXY_HTTP2=1: both proxies take cleartext HTTP/2 from the client (prior knowledge, h2c);
# the load generator is h2load. Their upstream side stays HTTP/1.1 keep-alive.
PROXY_HTTP2=${PROXY_HTTP2:-0}
SCHEME=http # https with PROXY_TLS=1 (set by the caller)
export SCHEME

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# cleanup

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n "$CURRENT_CHILD" ]]; then kill -TERM "$CURRENT_CHILD" 2>/dev/null || true; fi
    # SIGTERM first (nginx master does a fast shutdown and takes its worker with it) ...
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # ... then wait up to 5 s, then SIGKILL whatever is left (including nginx workers).
    local deadline=$((SECONDS + 5)) alive
    while :; do
        alive=0
        for pid in "${STARTED_PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive == 0 || SECONDS >= deadline)) && break
        sleep 0.1
    done
    for pid in "${STARTED_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ -n "$WORKDIR" && -d "$WORKDIR" && -z "${BENCH_KEEP_WORKDIR:-}" ]]; then
        rm -rf "$WORKDIR"
    elif [[ -n "$WORKDIR" ]]; then
        log "kept work dir $WORKDIR"
    fi
    exit "$rc"
}

bench_install_traps() {
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
}

# ---------------------------------------------------------------------------------------------
# tools

apt_install() { # pkg...
    [[ $EUID -eq 0 ]] || return 1
    command -v apt-get >/dev/null || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}

find_nginx() {
    NGINX=$(command -v nginx || true)
    [[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
    [[ -n "$NGINX" ]]
}

ensure_tools() { # needs-wrk(0|1)
    local need_wrk=${1:-1}
    if ! find_nginx; then
        log "nginx not found; trying apt-get install nginx-light (then nginx)"
        apt_install nginx-light || apt_install nginx ||
            die "nginx is missing. Install it (Debian: apt-get install nginx-light, or nginx) and re-run (apt-get needs root)."
        find_nginx || die "nginx still not found after installing"
    fi
    if ((need_wrk)) && ! command -v wrk >/dev/null; then
        log "wrk not found; trying apt-get install wrk"
        apt_install wrk || die "wrk is missing. Install it (Debian: apt-get install wrk) and re-run (apt-get needs root)."
    fi
    if ((need_wrk && PROXY_HTTP2)) && ! command -v h2load >/dev/null; then
        log "h2load not found; trying apt-get install nghttp2-client"
        apt_install nghttp2-client ||
            die "h2load is missing. Install it (Debian: apt-get install nghttp2-client) and re-run (apt-get needs root)."
    fi
    local t
    for t in taskset pgrep getconf python3; do
        command -v "$t" >/dev/null || die "$t is missing (taskset: util-linux, pgrep: procps)"
    done
    # Many connections: raise the soft fd limit for us and everything we start.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# Build (or locate) the gateway binary. MERIDIAN_BIN overrides the build.
ensure_meridian() {
    if [[ -n "${MERIDIAN_BIN:-}" ]]; then
        [[ -x "$MERIDIAN_BIN" ]] || die "MERIDIAN_BIN=$MERIDIAN_BIN is not an executable"
        MERIDIAN=$MERIDIAN_BIN
        return
    fi
    log "building the gateway: cargo build --release -p meridian (first build takes minutes)"
    (cd "$REPO_ROOT" && cargo build --release -p meridian >&2) ||
        die "cargo build --release -p meridian failed (set MERIDIAN_BIN to use a prebuilt binary, or --targets backend,nginx)"
    MERIDIAN=$REPO_ROOT/target/release/meridian
    [[ -x "$MERIDIAN" ]] || die "$MERIDIAN not found after the build"
}

# ---------------------------------------------------------------------------------------------
# CPU layout
#
# The process under test (nginx proxy, the gateway, or the backend when it is measured alone)
# runs on TARGET_CPU. The backend and wrk run on other cores. With only 2 cores, wrk and the
# backend share the second core; with 3+ cores each gets its own.

expand_cpu_list() { # "0-3,6" -> "0 1 2 3 6"
    local part parts cpus=() a b i
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then
            a=${part%-*} b=${part#*-}
            for ((i = a; i <= b; i++)); do cpus+=("$i"); done
        else
            cpus+=("$part")
        fi
    done
    echo "${cpus[@]}"
}

setup_cpus() {
    local allowed
    allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
    read -ra CPUS <<<"$(expand_cpu_list "$allowed")"
    ((${#CPUS[@]} >= 2)) || die "need at least 2 usable CPUs (have: $allowed)"
    TARGET_CPU=${TARGET_CPU:-${CPUS[0]}}
    BACKEND_CPU=${BACKEND_CPU:-${CPUS[1]}}
    if ((${#CPUS[@]} >= 3)); then
        WRK_CPU=${WRK_CPU:-${CPUS[2]}}
    else
        WRK_CPU=${WRK_CPU:-${CPUS[1]}}
    fi
}

# ---------------------------------------------------------------------------------------------
# /proc helpers

cpu_ticks() { # pid -> utime+stime (all threads) in clock ticks
    local s f
    s=$(<"/proc/$1/stat")
    s=${s##*) }          # drop "pid (comm) "; field 3 (state) is now f[0]
    read -ra f <<<"$s"
    echo $((f[11] + f[12])) # fields 14 (utime) and 15 (stime)
}

proc_kb() { # pid field(VmHWM|VmRSS) -> kB
    awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"
}

kb_to_mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_port() { # port pid name logfile
    local port=$1 pid=$2 name=$3 logf=$4
    local deadline=$((SECONDS + START_DEADLINE_S))
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logf" >&2 2>/dev/null || true
            die "$name exited before listening on $HOST:$port (log: $logf)"
        fi
        ((SECONDS < deadline)) || { tail -n 20 "$logf" >&2 2>/dev/null || true; die "$name not listening on $HOST:$port after ${START_DEADLINE_S}s"; }
        sleep 0.05
    done
}

check_port_free() {
    if port_open "$1"; then
        die "something already listens on $HOST:$1 (a previous run still alive?); stop it first"
    fi
}

positive_ints() { # VAR... -> returns 1 (after saying which) unless each is a positive integer
    local v
    for v in "$@"; do
        if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
            log "error: $v must be a positive integer (got '${!v}')"
            return 1
        fi
    done
}

start_bench_upstream() { # port: meridian-gateway-bench's fixed upstream (BENCH_BIN), logged to WORKDIR
    check_port_free "$1"
    "$BENCH_BIN" upstream --listen "$HOST:$1" >"$WORKDIR/upstream.log" 2>&1 &
    STARTED_PIDS+=("$!")
    wait_port "$1" "$!" upstream "$WORKDIR/upstream.log"
}

nginx_worker() { # master pid [count] -> the worker pids, space-separated (waits for them)
    local master=$1 n=${2:-1} w deadline=$((SECONDS + START_DEADLINE_S))
    while :; do
        w=$(pgrep -P "$master" | sort -n | head -n "$n" | tr '\n' ' ' || true)
        w=${w% }
        if [[ -n "$w" ]] && (($(wc -w <<<"$w") == n)); then echo "$w"; return; fi
        ((SECONDS < deadline)) || die "fewer than $n nginx workers under master $master"
        sleep 0.05
    done
}

# A self-signed EC P-256 certificate for 127.0.0.1 / localhost, used by both TLS proxies.
make_cert() { # -> sets CERT, KEY
    CERT=$WORKDIR/cert.pem KEY=$WORKDIR/key.pem
    command -v openssl >/dev/null || die "openssl is missing (needed for --tls)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 || die "openssl could not make a test certificate"
}

tls_session() { # port -> "TLSv1.3 TLS_AES_256_GCM_SHA384" as an OpenSSL client negotiates it
    openssl s_client -connect "$HOST:$1" -servername localhost </dev/null 2>/dev/null |
        awk '/^ *Protocol *:/ {p = $3} /^ *Cipher *:/ {c = $3} /^New, / {v = $2; c2 = $5}
             END {if (p == "") p = v; if (c == "") c = c2; sub(",", "", p); print p, c}'
}

# ---------------------------------------------------------------------------------------------
# servers

# ensure_bench_bin profile: BENCH_BIN (when set, it must be an executable) or a fresh build of
# `meridian-gateway-bench` in that cargo profile. Returns 1 after saying why when neither works.
ensure_bench_bin() {
    local profile=$1
    if [[ -n "${BENCH_BIN:-}" ]]; then
        [[ -x "$BENCH_BIN" ]] || { log "error: BENCH_BIN=$BENCH_BIN is not an executable"; return 1; }
        return 0
    fi
    log "building: cargo build --locked --profile $profile -p meridian-gateway --bin meridian-gateway-bench"
    (cd "$REPO_ROOT" && cargo build --locked --profile "$profile" -p meridian-gateway --bin meridian-gateway-bench >&2) ||
        { log "error: cargo build failed"; return 1; }
    local dir=$profile
    [[ $profile == dev ]] && dir=debug
    BENCH_BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$dir/meridian-gateway-bench
    [[ -x "$BENCH_BIN" ]] || { log "error: $BENCH_BIN not found after the build"; return 1; }
}

# callgrind_stop pid name out log: SIGTERM a process running under callgrind, wait up to 120 s
# for it (callgrind writes its profile on exit), set TOTAL to the instructions (Ir) in `out`
# and remove it. Returns 1 (after saying why, with the log's tail) when either fails.
callgrind_stop() {
    local pid=$1 name=$2 out=$3 logfile=$4
    kill -TERM "$pid"
    local deadline=$((SECONDS + 120))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || { log "error: $name did not stop within 120 s of SIGTERM"; return 1; }
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    local total
    total=$(awk '$1 == "totals:" || $1 == "summary:" {print $2; exit}' "$out" 2>/dev/null || true)
    [[ $total =~ ^[0-9]+$ ]] || { tail -n 20 "$logfile" >&2; log "error: no instruction total in $out"; return 1; }
    rm -f "$out"
    # shellcheck disable=SC2034 # read by the caller
    TOTAL=$total
}

# callgrind_configs upstream-port gateway-port: the fixed gateway config of bench/callgrind.sh
# in WORKDIR (global.yaml; bootstrap.yaml; bootstrap-log.yaml, the same node with its access log
# appended to ACCESS_LOG, which it sets to WORKDIR/access.log). The routes: /api (plain), /web
# (CORS and header policies).
# Nothing in it works by wall-clock time: no file watching, no health checks, no drain period,
# no log flush on a timer, so the log is written when it holds 1 MiB and at the stop (a run
# under callgrind is ~50x slower than native: timed work would happen more often per request
# than natively, and a different number of times in every run).
callgrind_configs() {
    local upstream=$1 gateway=$2
    ACCESS_LOG=$WORKDIR/access.log
    cat >"$WORKDIR/global.yaml" <<EOF
deployment: callgrind
regions: [{ name: local }]
services:
  - name: upstream
    concurrency_limit: 100000
    endpoints: { local: [{ address: "$HOST:$upstream" }] }
routes:
  - name: api
    match: { path: { prefix: /api } }
    service: upstream
  - name: web
    match: { path: { prefix: /web } }
    service: upstream
    policies: [browser-cors, tag-requests]
policies:
  - name: browser-cors
    cors:
      allow_origins: ["http://localhost:3000"]
      allow_methods: [GET, PUT]
      allow_headers: [content-type, authorization]
      max_age: 10m
  - name: tag-requests
    headers:
      request: { set: { x-gateway: meridian } }
      response: { remove: [server] }
EOF
    cat >"$WORKDIR/bootstrap.yaml" <<EOF
node: { id: callgrind, region: local }
listeners:
  - name: public
    address: "$HOST:$gateway"
admin: { address: "$HOST:0" }
config: { source: file, path: "$WORKDIR/global.yaml", watch_interval: 1h }
shutdown: { drain_period: 0s, grace_period: 10s }
EOF
    {
        cat "$WORKDIR/bootstrap.yaml"
        echo "access_log: { enabled: true, path: \"$ACCESS_LOG\", flush_interval: 1h }"
    } >"$WORKDIR/bootstrap-log.yaml"
}

make_workdir() {
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/meridian-bench.XXXXXX")
}

nginx_common_conf() { # dir [workers]
    local d=$1
    cat <<EOF
daemon off;
master_process on;
worker_processes ${2:-1};
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
EOF
}

nginx_http_common() { # dir
    local d=$1
    cat <<EOF
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}

# listen-directive backend-port [more directives for the location]: the reverse proxy every
# nginx run here uses
nginx_proxy_blocks() {
    cat <<EOF
    upstream backend {
        server $HOST:$2;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        $1
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
${3:-}
        }
    }
EOF
}

nginx_callgrind_conf() { # dir listen-directive backend-port: one process, no master, for callgrind
    local d=$1
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
$(nginx_http_common "$d")
$(nginx_proxy_blocks "$2" "$3")
}
EOF
}

launch_nginx() { # name cpu port -> sets LAUNCHED_PID (master)
    local name=$1 cpu=$2 port=$3 d=$WORKDIR/$1
    taskset -c "$cpu" "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    LAUNCHED_PID=$!
    STARTED_PIDS+=("$LAUNCHED_PID")
    wait_port "$port" "$LAUNCHED_PID" "$name" "$d/error.log"
}

# Backend: nginx, one worker, fixed small 200 body. Sets BACKEND_MASTER, BACKEND_PID (worker).
start_backend() {
    local d=$WORKDIR/backend
    mkdir -p "$d/tmp"
    check_port_free "$BACKEND_PORT"
    {
        nginx_common_conf "$d"
        echo "http {"
        nginx_http_common "$d"
        cat <<EOF
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        location / {
            default_type text/plain;
            return 200 "hello from backend\n";
        }
    }
}
EOF
    } >"$d/nginx.conf"
    launch_nginx backend "$BACKEND_CPU" "$BACKEND_PORT"
    BACKEND_MASTER=$LAUNCHED_PID
    BACKEND_PID=$(nginx_worker "$BACKEND_MASTER")
    log "backend  nginx on $HOST:$BACKEND_PORT  master $BACKEND_MASTER worker $BACKEND_PID  cpu $BACKEND_CPU"
}

# nginx as a reverse proxy with a keep-alive upstream pool. Sets NGINXP_MASTER, NGINXP_PID.
start_nginx_proxy() {
    local d=$WORKDIR/nginx-proxy
    mkdir -p "$d/tmp"
    check_port_free "$NGINX_PORT"
    local listen="listen $HOST:$NGINX_PORT backlog=4096;"
    if ((PROXY_TLS)); then
        # Ciphers and protocols: OpenSSL's defaults, as the gateway keeps rustls's.
        listen="listen $HOST:$NGINX_PORT ssl backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    if ((PROXY_HTTP2)); then
        # Cleartext HTTP/2 with prior knowledge (nginx 1.22's form; later versions warn).
        listen="listen $HOST:$NGINX_PORT http2 backlog=4096;"
    fi
    {
        nginx_common_conf "$d" "$PROXY_WORKERS"
        echo "http {"
        nginx_http_common "$d"
        nginx_proxy_blocks "$listen" "$BACKEND_PORT"
        echo "}"
    } >"$d/nginx.conf"
    launch_nginx nginx-proxy "$TARGET_CPU" "$NGINX_PORT"
    NGINXP_MASTER=$LAUNCHED_PID
    NGINXP_PID=$(nginx_worker "$NGINXP_MASTER" "$PROXY_WORKERS")
    log "nginx    proxy on $HOST:$NGINX_PORT  master $NGINXP_MASTER worker(s) $NGINXP_PID  cpu $TARGET_CPU"
}

# The gateway, PROXY_WORKERS workers: quick mode, or with PROXY_TLS=1 a bootstrap file with a TLS
# listener and otherwise quick mode's configs (crates/meridian-gateway/src/quick.rs; quick mode
# has no TLS). Sets
# MERIDIAN_PID. $1: the name of its directory in WORKDIR (default meridian).
start_meridian() {
    local d=$WORKDIR/${1:-meridian}
    mkdir -p "$d"
    check_port_free "$MERIDIAN_PORT"
    local args=(--listen "$HOST:$MERIDIAN_PORT" --upstream "$HOST:$BACKEND_PORT" --admin "$HOST:0")
    if ((PROXY_TLS)); then
        cat >"$d/global.yaml" <<EOF
deployment: quick
regions: [{ name: local }]
services:
  - name: upstream
    concurrency_limit: 100000
    endpoints: { local: [{ address: "$HOST:$BACKEND_PORT" }] }
routes:
  - name: default
    match: { path: { prefix: / } }
    service: upstream
EOF
        cat >"$d/bootstrap.yaml" <<EOF
node: { id: quick, region: local }
listeners:
  - name: quick
    address: "$HOST:$MERIDIAN_PORT"
    limits: { max_body_bytes: 18446744073709551615 }
    tls: { certificates: [{ cert: "$CERT", key: "$KEY" }] }
admin: { address: "$HOST:0" }
config: { source: file, path: "$d/global.yaml", watch_interval: 1h }
EOF
        args=(-c "$d/bootstrap.yaml")
    fi
    MERIDIAN_LOG=warn taskset -c "$TARGET_CPU" "$MERIDIAN" gateway "${args[@]}" \
        --workers "$PROXY_WORKERS" >"$d/meridian.log" 2>&1 &
    MERIDIAN_PID=$!
    STARTED_PIDS+=("$MERIDIAN_PID")
    wait_port "$MERIDIAN_PORT" "$MERIDIAN_PID" meridian "$d/meridian.log"
    log "meridian gateway on $HOST:$MERIDIAN_PORT  pid $MERIDIAN_PID  threads $(find /proc/$MERIDIAN_PID/task -mindepth 1 -maxdepth 1 | wc -l)  cpu $TARGET_CPU"
}

# One request through a target; the body must be the backend's.
check_target() { # name port [scheme]
    local body
    if ((PROXY_HTTP2)) && [[ $1 != backend ]]; then
        # h2load prints no bodies: one request, which must be a 2xx over HTTP/2.
        body=$(h2load -n1 -c1 "http://$HOST:$2/" 2>&1) || die "$1 on port $2 did not answer over HTTP/2: $body"
        grep -q "^status codes: 1 2xx" <<<"$body" || die "$1 on port $2: no 2xx over HTTP/2: $body"
        grep -q "Application protocol: h2c" <<<"$body" || die "$1 on port $2 did not speak h2c: $body"
        return 0
    fi
    body=$(python3 - "$HOST" "$2" "${3:-http}" <<'EOF'
import ssl, sys, urllib.request
ctx = ssl._create_unverified_context()  # the bench's own self-signed certificate
with urllib.request.urlopen(f"{sys.argv[3]}://{sys.argv[1]}:{sys.argv[2]}/", timeout=5, context=ctx) as r:
    sys.stdout.write(f"{r.status} {r.read().decode().strip()}")
EOF
    ) || die "$1 on port $2 did not answer a GET /"
    [[ "$body" == "200 hello from backend" ]] || die "$1 on port $2 answered '$body', expected '200 hello from backend'"
}

machine_info() {
    local model
    model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "- Machine: $(nproc) CPUs usable ($(grep -c ^processor /proc/cpuinfo) online), CPU model \`$model\`, kernel $(uname -r)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); wrk: $(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
    if [[ -n "$MERIDIAN" ]]; then
        local rev dirty=""
        rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
        [[ -n "$(git -C "$REPO_ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]] && dirty=" + uncommitted changes in crates/"
        if [[ -n "${MERIDIAN_BIN:-}" ]]; then
            echo "- meridian: prebuilt \`$MERIDIAN\` (MERIDIAN_BIN; binary from $(date -u -r "$MERIDIAN" '+%Y-%m-%d %H:%M UTC'); repo HEAD now $rev$dirty)"
        else
            echo "- meridian: \`$MERIDIAN\` (built by this run from $rev$dirty)"
        fi
    fi
    echo "- CPU pinning: process under test on CPU $TARGET_CPU; backend on CPU $BACKEND_CPU; wrk on CPU $WRK_CPU"
    echo "- Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

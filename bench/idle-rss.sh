#!/usr/bin/env bash
# Memory per idle keep-alive connection: nginx as a proxy versus the gateway.
#
#   bench/idle-rss.sh [--conns N] [--hold S] [--targets nginx,meridian]
#
# Defaults: 1000 connections, 5 s hold. Starts the backend (:19000), nginx as proxy (:19001) and
# the gateway (:19002) exactly like bench/proxy.sh, then for each target opens N connections,
# sends one `GET / HTTP/1.1` on each, reads the response, and holds them idle for S seconds
# while sampling the RSS of the proxy (nginx: its worker; meridian: the process).
# The gateway's default header_read_timeout (10 s) also bounds idle HTTP/1.1 keep-alive, so the
# hold must stay under 10 s. MERIDIAN_BIN skips the cargo build. Loopback only.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=1000
HOLD=5
TARGETS=nginx,meridian

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --conns) CONNS=${2:?}; shift 2 ;;
        --hold) HOLD=${2:?}; shift 2 ;;
        --targets) TARGETS=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if ! [[ $CONNS =~ ^[0-9]+$ ]] || ((CONNS == 0 || CONNS > 5000)); then die "--conns must be 1..5000"; fi
if ! [[ $HOLD =~ ^[0-9]+$ ]] || ((HOLD == 0 || HOLD >= 10)); then
    die "--hold must be 1..9 s (the gateway closes idle keep-alive after 10 s)"
fi
IFS=, read -ra TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ $t == nginx || $t == meridian ]] || die "unknown target '$t' (nginx, meridian)"
done
has_target() { [[ ",$TARGETS," == *",$1,"* ]]; }

bench_install_traps
ensure_tools 0
setup_cpus
if has_target meridian; then ensure_meridian; fi
make_workdir

declare -A PORT PID LABEL
start_backend
if has_target nginx; then
    start_nginx_proxy
    PORT[nginx]=$NGINX_PORT PID[nginx]=$NGINXP_PID LABEL[nginx]="nginx proxy (worker)"
fi
if has_target meridian; then
    start_meridian
    PORT[meridian]=$MERIDIAN_PORT PID[meridian]=$MERIDIAN_PID LABEL[meridian]="meridian"
fi
for t in "${TARGET_LIST[@]}"; do check_target "$t" "${PORT[$t]}"; done

REPORT=$WORKDIR/report.md
{
    echo "# Idle keep-alive connections: RSS $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`bench/idle-rss.sh --conns $CONNS --hold $HOLD --targets $TARGETS\`"
    echo
    machine_info
    echo "- Client: bench/idle_conns.py on CPU $WRK_CPU: $CONNS connections, one \`GET / HTTP/1.1\` each (response read), then idle ${HOLD} s"
    echo "- RSS = VmRSS of the proxy process (largest sample during the hold); before = just before connecting"
    echo
    echo "- Anonymous = RssAnon of the same process: its private memory, without the mapped binary and libraries (file-backed pages the kernel shares and can drop)"
    echo
    echo "| target | RSS before MiB | RSS with $CONNS idle conns MiB | growth MiB | KiB per idle conn | peak RSS (VmHWM) MiB | anonymous before / with MiB | conns ok / failed | still open after ${HOLD} s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} | tee -a "$REPORT"

for t in "${TARGET_LIST[@]}"; do
    log "$t (:${PORT[$t]}): $CONNS idle connections for ${HOLD}s"
    out=$WORKDIR/idle-$t.json
    taskset -c "$WRK_CPU" python3 "$BENCH_DIR/idle_conns.py" --port "${PORT[$t]}" --pid "${PID[$t]}" \
        --conns "$CONNS" --hold "$HOLD" >"$out" &
    CURRENT_CHILD=$!
    rc=0
    wait "$CURRENT_CHILD" || rc=$?
    CURRENT_CHILD=""
    ((rc == 0)) || die "idle_conns.py against $t exited with $rc"
    python3 - "$out" "${LABEL[$t]}" <<'EOF' | tee -a "$REPORT"
import json, sys
r = json.load(open(sys.argv[1]))
mib = lambda kb: f"{kb / 1024:.1f}"
grow = r["rss_idle_kb"] - r["rss_base_kb"]
per = grow / r["conns_ok"] if r["conns_ok"] else float("nan")
print(f"| {sys.argv[2]} | {mib(r['rss_base_kb'])} | {mib(r['rss_idle_kb'])} | {mib(grow)} | {per:.1f} | "
      f"{mib(r['hwm_kb'])} | {mib(r['anon_base_kb'])} / {mib(r['anon_idle_kb'])} | "
      f"{r['conns_ok']} / {r['conns_failed']} | {r['still_open_after_hold']} |")
if set(r["statuses"]) != {"200"}:
    print(f"warning: response statuses {r['statuses']}", file=sys.stderr)
EOF
done

mkdir -p "$BENCH_DIR/results"
RESULT=$BENCH_DIR/results/idle-rss-$(date -u +%Y%m%dT%H%M%SZ).md
cp "$REPORT" "$RESULT"
log "results written to ${RESULT#"$REPO_ROOT"/}"

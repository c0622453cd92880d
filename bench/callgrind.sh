#!/usr/bin/env bash
# Regression guard for the hot path that times nothing: gateway instructions per request
# under callgrind on a fixed request mix, compared with a committed baseline.
#
#   bench/callgrind.sh [--update] [--scenarios get,post,not-found,pipeline,pipeline-log]
#                      [--count N]
#                      [--warmup N] [--repeats N] [--tolerance PCT] [--profile NAME]
#
# pipeline-log is the pipeline request (CORS + headers policy) on a gateway whose access log is
# on and written to a file, as operators run it (bootstrap `access_log: { enabled, path }`); its
# warm-up-only run uses that gateway too, and the run fails unless every request's line is in the
# file after shutdown. Every scenario's ratio to `get` is printed; pipeline-log above 1.3x get
# fails the run like a regression (issue 6: the realistic pipeline may cost at most 1.3x the
# plain route).
#
# Builds `meridian-gateway-bench` (a small binary of the gateway crate: the gateway as
# `meridian gateway` runs it, a fixed upstream and the request-mix client) with the baseline's
# cargo profile (ci-perf unless the baseline says otherwise; BENCH_BIN=/path skips the build and
# must be a build of that profile). Starts the upstream and a gateway (one worker, fixed config)
# under `valgrind --tool=callgrind` and drives it with the mix (one keep-alive connection, one
# request at a time). Per scenario: instructions of a run with warm-up + N requests minus a run
# with the warm-up only, divided by N, so start-up, warm-up and shutdown cancel out. Every
# measurement is repeated (--repeats, default 2) and must agree within 1 %. GATEWAY_BIN=/path
# measures another gateway binary (`meridian`: `GATEWAY_BIN gateway -c FILE --workers 1`).
#
# Exit 0: within --tolerance (default: the baseline's, 3 %) of bench/callgrind-baseline.json.
# Exit 1: a scenario costs more than that, or pipeline-log more than 1.3x get. Exit 2: the measurement itself failed or was not
# stable. --update rewrites the baseline with this run's numbers instead of comparing.
# Loopback only; every process started here is stopped on exit. See docs/benchmarks.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASELINE=${CALLGRIND_BASELINE:-$BENCH_DIR/callgrind-baseline.json}
UPSTREAM_PORT=${CALLGRIND_UPSTREAM_PORT:-19110}
GATEWAY_PORT=${CALLGRIND_GATEWAY_PORT:-19111}
UPDATE=0
SCENARIOS=get,post,not-found,pipeline,pipeline-log
COUNT=1000
WARMUP=20
REPEATS=2
TOLERANCE=""
PROFILE=""
STABILITY_PCT=1

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { log "error: $*"; exit 2; }

while (($#)); do
    case $1 in
        --update) UPDATE=1; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift 2 ;;
        --count) COUNT=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --repeats) REPEATS=${2:?}; shift 2 ;;
        --tolerance) TOLERANCE=${2:?}; shift 2 ;;
        --profile) PROFILE=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; fail "unknown argument: $1" ;;
    esac
done
positive_ints COUNT WARMUP REPEATS || exit 2
((COUNT <= 100000 && WARMUP <= 1000 && REPEATS <= 5)) || fail "--count <= 100000, --warmup <= 1000, --repeats <= 5"
IFS=, read -ra SCENARIO_LIST <<<"$SCENARIOS"
for s in "${SCENARIO_LIST[@]}"; do
    [[ $s == get || $s == post || $s == not-found || $s == pipeline || $s == pipeline-log ]] ||
        fail "unknown scenario '$s'"
done

# --- the baseline: one flat JSON object, one key per line (written by --update below) -------
baseline_get() { # key -> value ("" when absent)
    [[ -f $BASELINE ]] || return 0
    sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\} *$/\1/p" "$BASELINE" | head -n 1
}
PROFILE=${PROFILE:-$(baseline_get profile)}
PROFILE=${PROFILE:-ci-perf}
TOLERANCE=${TOLERANCE:-$(baseline_get tolerance_percent)}
TOLERANCE=${TOLERANCE:-3}

bench_install_traps
command -v valgrind >/dev/null || fail "valgrind is missing (Debian: apt-get install valgrind)"
make_workdir

# --- the binary -----------------------------------------------------------------------------
ensure_bench_bin "$PROFILE" || exit 2
GATEWAY_BIN=${GATEWAY_BIN:-$BENCH_BIN}
[[ -x "$GATEWAY_BIN" ]] || fail "GATEWAY_BIN=$GATEWAY_BIN is not an executable"

# --- the parties ----------------------------------------------------------------------------
check_port_free "$GATEWAY_PORT"
start_bench_upstream "$UPSTREAM_PORT"

callgrind_configs "$UPSTREAM_PORT" "$GATEWAY_PORT"

# measure scenario count [bootstrap]: sets TOTAL to the instructions (Ir) of the whole gateway process.
# (Not run in a subshell, so the gateway's pid reaches STARTED_PIDS for the exit trap.)
RUN=0
measure() {
    local scenario=$1 count=$2 bootstrap=${3:-$WORKDIR/bootstrap.yaml}
    RUN=$((RUN + 1))
    rm -f "$ACCESS_LOG"
    local out=$WORKDIR/callgrind.$RUN.out glog=$WORKDIR/gateway.$RUN.log
    MERIDIAN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
        --dump-line=no "$GATEWAY_BIN" gateway -c "$bootstrap" --workers 1 >"$glog" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    START_DEADLINE_S=120 wait_port "$GATEWAY_PORT" "$pid" "gateway under callgrind" "$glog"
    "$BENCH_BIN" mix --addr "$HOST:$GATEWAY_PORT" --warmup "$WARMUP" --scenario "$scenario" \
        --count "$count" >"$WORKDIR/mix.$RUN.json" 2>"$WORKDIR/mix.$RUN.err" &
    CURRENT_CHILD=$!
    local rc=0
    wait "$CURRENT_CHILD" || rc=$?
    CURRENT_CHILD=""
    ((rc == 0)) || { cat "$WORKDIR/mix.$RUN.err" >&2; fail "the request mix ($scenario × $count) failed"; }
    callgrind_stop "$pid" gateway "$out" "$glog" || exit 2
}

# measure_scenario name count: the mix request and the gateway's bootstrap for a scenario.
measure_scenario() {
    if [[ $1 == pipeline-log ]]; then
        measure pipeline "$2" "$WORKDIR/bootstrap-log.yaml"
        # Every request's line must be in the file once the gateway has stopped.
        local want=$((WARMUP * 4 + $2)) got
        got=$(wc -l <"$ACCESS_LOG" 2>/dev/null || echo 0)
        ((got == want)) || fail "pipeline-log: $got access log lines after shutdown, expected $want"
    else
        measure "$1" "$2"
    fi
}

per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (a - b) / n}'; }
spread_pct() { # values... -> (max - min) / min in %
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {printf "%.2f", (a[NR] - a[1]) / a[1] * 100}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

log "callgrind guard: profile $PROFILE, scenarios $SCENARIOS, $COUNT requests each after $WARMUP warm-up rounds, $REPEATS repeats"
declare -A SAMPLES
for ((rep = 1; rep <= REPEATS; rep++)); do
    measure get 0
    base=$TOTAL
    log "repeat $rep: warm-up only: $base instructions"
    if [[ ",$SCENARIOS," == *,pipeline-log,* ]]; then
        measure_scenario pipeline-log 0
        base_log=$TOTAL
        log "repeat $rep: warm-up only, access log on: $base_log instructions"
    fi
    for s in "${SCENARIO_LIST[@]}"; do
        measure_scenario "$s" "$COUNT"
        total=$TOTAL
        b=$base
        [[ $s == pipeline-log ]] && b=$base_log
        pr=$(per_request "$total" "$b" "$COUNT")
        SAMPLES[$s]="${SAMPLES[$s]:-} $pr"
        log "repeat $rep: $s: $total instructions, $pr per request"
    done
done

declare -A RESULT
unstable=0
for s in "${SCENARIO_LIST[@]}"; do
    read -ra v <<<"${SAMPLES[$s]}"
    RESULT[$s]=$(median "${v[@]}")
    sp=$(spread_pct "${v[@]}")
    if awk -v a="$sp" -v b="$STABILITY_PCT" 'BEGIN {exit !(a > b)}'; then
        log "$s: repeats differ by $sp % (${v[*]}), more than $STABILITY_PCT %"
        unstable=1
    fi
done
((unstable == 0)) || fail "the measurement is not stable; nothing compared (is something timer-driven in the gateway?)"

# The table: this run against the baseline (when there is one), and every scenario's ratio to get.
has_baseline=0
if [[ -f $BASELINE ]]; then
    has_baseline=1
    base_profile=$(baseline_get profile)
    [[ $base_profile == "$PROFILE" ]] || { ((UPDATE)) || fail "the baseline is for profile '$base_profile', this run measured '$PROFILE'"; has_baseline=0; }
    base_rustc=$(baseline_get rustc)
    now_rustc=$(rustc --version 2>/dev/null || echo unknown)
    [[ $base_rustc == "$now_rustc" ]] || log "note: baseline made with '$base_rustc', this is '$now_rustc' (a compiler change moves the counts too)"
elif ((UPDATE == 0)); then
    fail "no baseline at $BASELINE (create it with --update)"
fi

regressed=0
printf '\n| scenario | baseline instr/req | now | change | verdict | × get (now) |\n|---|---:|---:|---:|---|---:|\n'
for s in "${SCENARIO_LIST[@]}"; do
    x_get="–"
    [[ -n ${RESULT[get]:-} ]] && x_get=$(awk -v a="${RESULT[$s]}" -v g="${RESULT[get]}" 'BEGIN {printf "%.3f×", a / g}')
    b=""
    ((has_baseline)) && b=$(baseline_get "instructions_per_request.$s")
    if [[ -z $b ]]; then
        printf '| %s | – | %s | – | not in baseline | %s |\n' "$s" "${RESULT[$s]}" "$x_get"
        continue
    fi
    change=$(awk -v n="${RESULT[$s]}" -v b="$b" 'BEGIN {printf "%+.2f", (n - b) / b * 100}')
    verdict=ok
    if awk -v c="$change" -v t="$TOLERANCE" 'BEGIN {exit !(c > t)}'; then
        verdict="REGRESSION (> +$TOLERANCE %)"
        regressed=1
    elif awk -v c="$change" -v t="$TOLERANCE" 'BEGIN {exit !(c < -t)}'; then
        verdict="cheaper: run bench/callgrind.sh --update to lock it in"
    fi
    printf '| %s | %s | %s | %s %% | %s | %s |\n' "$s" "$b" "${RESULT[$s]}" "$change" "$verdict" "$x_get"
done
echo
PIPELINE_LIMIT=1.3
over_limit=0
if [[ -n ${RESULT[pipeline-log]:-} && -n ${RESULT[get]:-} ]]; then
    ratio=$(awk -v a="${RESULT[pipeline-log]}" -v g="${RESULT[get]}" 'BEGIN {printf "%.3f", a / g}')
    log "pipeline-log (CORS, headers policy, access log to a file): ${ratio}× get (issue 6 allows ${PIPELINE_LIMIT}×)"
    if awk -v r="$ratio" -v l="$PIPELINE_LIMIT" 'BEGIN {exit !(r > l)}'; then
        over_limit=1
        log "pipeline-log costs more than ${PIPELINE_LIMIT}× get: the pipeline (or the log) must get cheaper along with the plain route"
    fi
fi

if ((UPDATE)); then
    rustc_v=$(rustc --version 2>/dev/null || echo unknown)
    valgrind_v=$(valgrind --version)
    rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    {
        echo "{"
        echo "  \"profile\": \"$PROFILE\","
        echo "  \"tolerance_percent\": $TOLERANCE,"
        echo "  \"count\": $COUNT,"
        echo "  \"warmup_rounds\": $WARMUP,"
        echo "  \"rustc\": \"$rustc_v\","
        echo "  \"valgrind\": \"$valgrind_v\","
        echo "  \"measured_at\": \"$(date -u +%Y-%m-%dT%H:%MZ) (HEAD $rev)\","
        for ((i = 0; i < ${#SCENARIO_LIST[@]}; i++)); do
            s=${SCENARIO_LIST[$i]}
            sep=","
            ((i == ${#SCENARIO_LIST[@]} - 1)) && sep=""
            echo "  \"instructions_per_request.$s\": ${RESULT[$s]}$sep"
        done
        echo "}"
    } >"$BASELINE"
    log "baseline written to ${BASELINE#"$REPO_ROOT"/}"
    cat "$BASELINE"
    exit 0
fi

((over_limit == 0)) || exit 1
if ((regressed)); then
    log "hot-path regression: instructions per request grew by more than $TOLERANCE % over ${BASELINE#"$REPO_ROOT"/}."
    log "Profile it (docs/benchmarks.md, 'Instruction counts'); if the cost is intended, run bench/callgrind.sh --update and commit the baseline with the reason."
    exit 1
fi
log "within $TOLERANCE % of the baseline"

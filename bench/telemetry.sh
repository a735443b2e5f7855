#!/usr/bin/env bash
# What sluice's telemetry costs, side by side in one run, on the same route (app -> v1):
#
#   OFF  --no-request-metrics, no access log, no tracing
#   MET  request metrics and the traffic graph (the default)
#   ALL  MET + JSON access log to a file + tracing at 1 % sampling, exported with OTLP/HTTP
#        to a local sink (a `sluice backend`, which answers every POST with 200)
#   -> target CPU per request ALL/OFF <= 1.15
#
# Usage: bash bench/telemetry.sh
#
# Environment knobs (all optional):
#   DURATION=10 WARMUP=2 CONCURRENCY=16 ROUNDS=3 (order OFF MET ALL, then ALL MET OFF, ...)
#   QUIET_LOAD=0.7 QUIET_WAIT=600   wait (at most QUIET_WAIT s) for 1-min load < QUIET_LOAD first
#   SLUICE_BIN=path  use this sluice binary instead of building target/release/sluice
#   PROXY_CPU=0 LOAD_CPU=1   cores for sluice / for wrk, the backend and the span sink
set -euo pipefail

LOG_TAG=telemetry
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-16}
ROUNDS=${ROUNDS:-3}
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-600}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

bench_init sluice-telemetry
ensure_tools
build_sluice
write_report_lua "$TMP/report.lua"
mkdir -p "$RESULTS/raw"
RAW="$RESULTS/raw"

start_backend() { # name version port
    TOKIO_WORKER_THREADS=1 taskset -c "$LOAD_CPU" "$SLUICE" backend \
        --listen "127.0.0.1:$3" --name "$1" --version "$2" >"$TMP/backend-$1.log" 2>&1 &
    PIDS+=("$!")
}
V1_PORT=$(free_port)
start_backend app v1 "$V1_PORT"
SINK_PORT=$(free_port)
start_backend otlp sink "$SINK_PORT"
wait_http "http://127.0.0.1:$V1_PORT/" || die "backend did not come up"
wait_http "http://127.0.0.1:$SINK_PORT/" || die "span sink did not come up"
log "backend app v1 on 127.0.0.1:$V1_PORT, span sink on 127.0.0.1:$SINK_PORT (core $LOAD_CPU)"

SCENARIOS=(OFF MET ALL)
declare -A TITLE=(
    [OFF]="request metrics, access log and tracing off"
    [MET]="request metrics and graph (default)"
    [ALL]="metrics + JSON access log + tracing 1 % (OTLP/HTTP)"
)

config_yaml() { # port
    cat <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  ports: [{number: $1, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: $V1_PORT}, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {host: app}
EOF
}

start_sluice() { # scenario tag; sets SL_PID SL_PORT SL_LOG
    local s=$1 tag=$2 dir="$TMP/config-$2" extra=()
    SL_PORT=$(free_port)
    local admin
    admin=$(free_port)
    SL_LOG="$TMP/sluice-$tag.log"
    mkdir -p "$dir"
    config_yaml "$SL_PORT" >"$dir/app.yaml"
    case $s in
    OFF) extra=(--no-request-metrics) ;;
    MET) extra=() ;;
    ALL) extra=(--access-log "$TMP/access-$tag.log"
        --tracing-endpoint "http://127.0.0.1:$SINK_PORT" --tracing-protocol http
        --tracing-sampling 1) ;;
    esac
    SLUICE_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SLUICE" run "$dir" \
        --no-gateway --no-watch --admin "127.0.0.1:$admin" --mesh-address 127.0.0.1 \
        "${extra[@]}" >"$SL_LOG" 2>&1 &
    SL_PID=$!
    PIDS+=("$SL_PID")
    wait_http "http://127.0.0.1:$admin/ready" || die "sluice ($tag) not ready: $(cat "$SL_LOG")"
    curl -sf --max-time 5 -H 'Host: app' "http://127.0.0.1:$SL_PORT/" >/dev/null \
        || die "request through sluice ($tag) failed: $(cat "$SL_LOG")"
}

run_wrk() { # seconds outfile
    timeout $(($1 + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$CONCURRENCY" -d"${1}s" --latency \
        -s "$TMP/report.lua" -H 'Host: app' "http://127.0.0.1:$SL_PORT/" >"$2" 2>&1
}

DISTURBED=""
if ! wait_quiet "$QUIET_LOAD" "$QUIET_WAIT"; then
    read -r LOAD_BEFORE _ </proc/loadavg
    DISTURBED="1-min load average was still $LOAD_BEFORE (≥ $QUIET_LOAD) after waiting ${QUIET_WAIT}s"
fi
read -r LOAD_BEFORE _ </proc/loadavg

declare -A R
WARNINGS=()
measure() { # scenario round
    local s=$1 r=$2 tag="$1-r$2" raw line kv t0 t1 k0 k1 s0 s1 own sink0 sink1
    start_sluice "$s" "$tag"
    log "$s round $r (${TITLE[$s]}): warmup ${WARMUP}s, measure ${DURATION}s"
    run_wrk "$WARMUP" "$TMP/warmup.txt" || die "wrk warmup failed"
    read -r k0 s0 < <(core_ticks "$PROXY_CPU")
    t0=$(cpu_ticks "$SL_PID")
    raw="$RAW/telemetry-$tag.txt"
    run_wrk "$DURATION" "$raw" || die "wrk failed: $(cat "$raw")"
    t1=$(cpu_ticks "$SL_PID")
    read -r k1 s1 < <(core_ticks "$PROXY_CPU")
    R[$s,$r,rss]=$(awk -v k="$(hwm_kb "$SL_PID")" 'BEGIN{printf "%.1f", k/1024}')
    stop_pid "$SL_PID"
    line=$(grep '^BENCH ' "$raw") || die "no BENCH line in $raw"
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    local d=${m[duration_us]} n=${m[requests]}
    [[ $n -gt 0 ]] || die "$tag: no requests completed"
    local errs=$((m[err_connect] + m[err_read] + m[err_write] + m[err_status] + m[err_timeout]))
    ((errs == 0)) || WARNINGS+=("$tag: $errs wrk errors")
    R[$s,$r,rps]=$(awk -v n="$n" -v d="$d" 'BEGIN{printf "%.0f", n/(d/1e6)}')
    R[$s,$r,p99]=$(awk -v v="${m[p99_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$s,$r,cpu]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN{printf "%.4f", t/hz/n*10000}')
    own=$((t1 - t0))
    R[$s,$r,other]=$(awk -v t=$((k1 - k0 - own)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{v = 100*t/hz/(d/1e6); printf "%.0f", v < 0 ? 0 : v}')
    if ((${R[$s,$r,other]} > 10)); then
        WARNINGS+=("$tag: core $PROXY_CPU busy with other work ${R[$s,$r,other]}% of the time")
        DISTURBED="${DISTURBED:+$DISTURBED; }other work on core $PROXY_CPU during some rows"
    fi
    if [[ $s == ALL ]]; then
        R[$s,$r,log_lines]=$(wc -l <"$TMP/access-$tag.log")
    fi
    log "  ${R[$s,$r,rps]} req/s, p99 ${R[$s,$r,p99]} ms, CPU ${R[$s,$r,cpu]} s/10k, peak RSS ${R[$s,$r,rss]} MiB$([[ $s == ALL ]] && echo ", access log lines ${R[$s,$r,log_lines]}")"
}

SINK_BEFORE=$(curl -sf "http://127.0.0.1:$SINK_PORT/" | sed -n 's/.*request \([0-9]*\).*/\1/p')
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order=(OFF MET ALL); else order=(ALL MET OFF); fi
    for s in "${order[@]}"; do measure "$s" "$r"; done
done
SINK_AFTER=$(curl -sf "http://127.0.0.1:$SINK_PORT/" | sed -n 's/.*request \([0-9]*\).*/\1/p')


ALL_RATIO=$(ratio "$(med ALL cpu)" "$(med OFF cpu)")
MET_RATIO=$(ratio "$(med MET cpu)" "$(med OFF cpu)")
REPORT="$RESULTS/telemetry.md"
{
    echo "# sluice telemetry overhead: metrics, access log, tracing"
    echo
    [[ -z $DISTURBED ]] || { echo "**DISTURBED RUN**: $DISTURBED. Do not trust small differences."; echo; }
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_desc); 1-min load before measuring: $LOAD_BEFORE"
    echo "- sluice: $(sluice_version); wrk: $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "- method: a fresh \`sluice run\` per row (\`TOKIO_WORKER_THREADS=1\`) on core $PROXY_CPU; wrk (-t1 -c$CONCURRENCY, HTTP/1.1 keep-alive), the backend and the span sink on core $LOAD_CPU; ${WARMUP}s warmup + ${DURATION}s per row; $ROUNDS round(s), order alternating; medians over the rounds. CPU is the whole sluice process (every thread, the span export thread included)."
    echo
    echo "| scenario | req/s | p99 ms | CPU s/10k req | peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        echo "| $s: ${TITLE[$s]} | $(med "$s" rps %.0f) | $(med "$s" p99 %.3f) | $(med "$s" cpu %.4f) | $(med "$s" rss %.1f) |"
    done
    echo
    echo "- CPU per request ALL/OFF = **$ALL_RATIO** (target ≤ 1.15: $(at_most "$ALL_RATIO" 1.15)); MET/OFF = $MET_RATIO"
    echo "- OTLP exports received by the sink during the run: $((SINK_AFTER - SINK_BEFORE - 1))"
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} >"$REPORT"
cat "$REPORT"

#!/usr/bin/env bash
# What sluice's traffic policies cost, side by side in one run:
#
#   A  route app -> subset v1 (fast backend)
#   B  A + mirror: {host: app, subset: v2}, mirrorPercentage 100, where v2 answers after 1 s
#      -> does mirroring slow the primary? target p99(B)/p99(A) <= 1.10; memory must stay bounded
#   C  plain route app (one fast backend), no DestinationRule
#   D  C + retries/timeout in the VirtualService + a DestinationRule with round robin,
#      connectionPool limits and outlierDetection
#      -> target CPU per request D/C <= 1.10
#
# Usage: bash bench/policies.sh
#
# Environment knobs (all optional):
#   DURATION=10      seconds of each measured wrk run
#   WARMUP=2         seconds of the unmeasured wrk run before each measured run
#   CONCURRENCY=16   wrk connections
#   ROUNDS=3         each scenario is measured ROUNDS times (fresh sluice each time, order
#                    alternating A B C D / B A D C); the summary is the median
#   MIRROR_DELAY=1s  answer delay of the mirror backend (v2)
#   MIRROR_DEAD=1    B mirrors to an address nothing listens on instead (connect refused)
#   MAX_MIRROR_IN_FLIGHT=N  pass --max-mirror-in-flight N to sluice (default: sluice's own)
#   DRAIN=3          seconds to watch sluice after scenario B's load stops
#   QUIET_LOAD=0.7 QUIET_WAIT=600   wait (at most QUIET_WAIT s) for 1-min load < QUIET_LOAD first
#   NOFILE=N         raise the open-files limit (ulimit -n) of everything started to N
#   SLUICE_BIN=path  use this sluice binary instead of building target/release/sluice
#   PROXY_CPU=0 LOAD_CPU=1   cores for sluice / for wrk and the backends
#
# See bench/README.md ("Policy overhead") for what is measured and how to read the result.
set -euo pipefail

LOG_TAG=policies
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-16}
ROUNDS=${ROUNDS:-3}
MIRROR_DELAY=${MIRROR_DELAY:-1s}
MAX_MIRROR_IN_FLIGHT=${MAX_MIRROR_IN_FLIGHT:-}
DRAIN=${DRAIN:-3}
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-600}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
START_TS=$(date +%s)
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be one positive integer"

bench_init sluice-policies
ensure_tools
build_sluice
if [[ -n "${NOFILE:-}" ]]; then
    ulimit -Hn "$NOFILE" 2>/dev/null || true
    ulimit -n "$NOFILE" || die "cannot raise the open-files limit to $NOFILE"
fi
write_report_lua "$TMP/report.lua"
mkdir -p "$RESULTS/raw"
RAW="$RESULTS/raw"

# ---------------------------------------------------------------- backends
# Both on the load core with wrk, one tokio worker each.
start_backend() { # version port [extra args...]; sets BACKEND_PID
    local version=$1 port=$2; shift 2
    TOKIO_WORKER_THREADS=1 taskset -c "$LOAD_CPU" "$SLUICE" backend \
        --listen "127.0.0.1:$port" --name app --version "$version" "$@" \
        >"$TMP/backend-$version.log" 2>&1 &
    BACKEND_PID=$!
    PIDS+=("$BACKEND_PID")
}
V1_PORT=$(free_port)
start_backend v1 "$V1_PORT"
V1_PID=$BACKEND_PID
V2_PORT=$(free_port)
start_backend v2 "$V2_PORT" --delay "$MIRROR_DELAY"
V2_PID=$BACKEND_PID
# Where v2's endpoint points: the backend, or with MIRROR_DEAD=1 a port nothing listens on.
V2_TARGET=$V2_PORT
if [[ ${MIRROR_DEAD:-0} == 1 ]]; then V2_TARGET=$(free_port); fi
log "backends: app v1 on 127.0.0.1:$V1_PORT, app v2 (--delay $MIRROR_DELAY) on 127.0.0.1:$V2_PORT (core $LOAD_CPU)"
wait_http "http://127.0.0.1:$V1_PORT/" || die "v1 backend did not come up: $(cat "$TMP/backend-v1.log")"
wait_http "http://127.0.0.1:$V2_PORT/" --max-time 30 || die "v2 backend did not come up: $(cat "$TMP/backend-v2.log")"

# Requests a backend has received so far (its answers end in "request N"),
# not counting the request made to ask.
backend_count() { # port
    local body
    body=$(curl -sf --max-time 30 "http://127.0.0.1:$1/") || die "backend on port $1 does not answer"
    [[ $body =~ request\ ([0-9]+) ]] || die "unexpected backend answer: $body"
    echo $((BASH_REMATCH[1] - 1))
}

# ---------------------------------------------------------------- configs
SCENARIOS=(A B C D)
declare -A TITLE=(
    [A]="route to subset v1"
    [B]="A + mirror 100 % to v2 ($([[ ${MIRROR_DEAD:-0} == 1 ]] && echo "dead endpoint" || echo "${MIRROR_DELAY} backend"))"
    [C]="plain route, no DestinationRule"
    [D]="C + retries, timeout, DestinationRule"
)

# The config of one scenario for a mesh listener on port $2.
config_yaml() { # scenario port
    local s=$1 port=$2
    cat <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  ports: [{number: $port, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: app}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: app-v1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: $V1_PORT}
  labels: {app: app, version: v1}
EOF
    case $s in
    A | B)
        cat <<EOF
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: app-v2, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: $V2_TARGET}
  labels: {app: app, version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: default}
spec:
  host: app
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {host: app, subset: v1}
EOF
        if [[ $s == B ]]; then
            cat <<EOF
    mirror: {host: app, subset: v2}
    mirrorPercentage: {value: 100}
EOF
        fi
        ;;
    C)
        cat <<EOF
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
        ;;
    D)
        cat <<EOF
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {host: app}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
    timeout: 10s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: default}
spec:
  host: app
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 1000}
      http: {http1MaxPendingRequests: 1000, http2MaxRequests: 1000}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
EOF
        ;;
    esac
}

# Starts a fresh sluice for a scenario; sets SL_PID, SL_PORT, SL_ADMIN, SL_LOG.
start_sluice() { # scenario tag
    local s=$1 tag=$2 dir="$TMP/config-$2" smoke
    SL_PORT=$(free_port)
    SL_ADMIN=$(free_port)
    SL_LOG="$TMP/sluice-$tag.log"
    mkdir -p "$dir"
    config_yaml "$s" "$SL_PORT" >"$dir/app.yaml"
    SLUICE_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SLUICE" run "$dir" \
        --no-gateway --no-watch --admin "127.0.0.1:$SL_ADMIN" --mesh-address 127.0.0.1 \
        ${MAX_MIRROR_IN_FLIGHT:+--max-mirror-in-flight "$MAX_MIRROR_IN_FLIGHT"} >"$SL_LOG" 2>&1 &
    SL_PID=$!
    PIDS+=("$SL_PID")
    wait_http "http://127.0.0.1:$SL_ADMIN/ready" || die "sluice ($tag) not ready: $(cat "$SL_LOG")"
    smoke=$(curl -sf --max-time 5 -H 'Host: app' "http://127.0.0.1:$SL_PORT/") \
        || die "request through sluice ($tag) failed: $(cat "$SL_LOG")"
    [[ $smoke == "app v1 - request"* ]] || die "unexpected answer through sluice ($tag): $smoke"
}

# Every 0.5 s until killed: "seconds sluice_rss_kb sluice_fds v2_fds" (bash builtins only,
# apart from sleep). Open fds of the v2 backend ~ mirror copies in flight.
sampler() { # sluice_pid v2_pid
    local t0=$SECONDS k v rss fds
    while :; do
        rss=0
        while read -r k v _; do [[ $k == VmRSS: ]] && rss=$v; done <"/proc/$1/status" || true
        fds=(/proc/"$1"/fd/*)
        local sl_fds=${#fds[@]}
        fds=(/proc/"$2"/fd/*)
        echo "$((SECONDS - t0)) $rss $sl_fds ${#fds[@]}"
        sleep 0.5
    done
}

fd_count() { local f=(/proc/"$1"/fd/*); echo "${#f[@]}"; }

run_wrk() { # seconds outfile
    timeout $(($1 + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$CONCURRENCY" -d"${1}s" --latency \
        -s "$TMP/report.lua" -H 'Host: app' "http://127.0.0.1:$SL_PORT/" >"$2" 2>&1
}

# ---------------------------------------------------------------- quiet machine
DISTURBED=""
read -r LOAD_BEFORE _ </proc/loadavg
if ! wait_quiet "$QUIET_LOAD" "$QUIET_WAIT"; then
    read -r LOAD_BEFORE _ </proc/loadavg
    DISTURBED="1-min load average was still $LOAD_BEFORE (≥ $QUIET_LOAD) after waiting ${QUIET_WAIT}s"
else
    read -r LOAD_BEFORE _ </proc/loadavg
fi

# ---------------------------------------------------------------- measure
declare -A R   # R[scenario,round,field]
WARNINGS=()
NOFILE_NOW=$(ulimit -n)

measure() { # scenario round
    local s=$1 r=$2 tag="$1-r$2" raw line kv errs k0 s0 k1 s1 l0 l1 t0 t1 v0 v1 w0 w1 own
    local v1_before v2_before v1_after v2_after samp_pid
    v1_before=$(backend_count "$V1_PORT")
    if [[ $s == B ]]; then v2_before=$(backend_count "$V2_PORT"); fi
    start_sluice "$s" "$tag"
    sampler "$SL_PID" "$V2_PID" >"$RAW/policies-$tag-samples.txt" 2>/dev/null &
    samp_pid=$!
    PIDS+=("$samp_pid")
    taskset -pc "$LOAD_CPU" "$samp_pid" >/dev/null 2>&1 || true
    log "$s round $r (${TITLE[$s]}): sluice on 127.0.0.1:$SL_PORT; warmup ${WARMUP}s, measure ${DURATION}s"
    run_wrk "$WARMUP" "$TMP/warmup.txt" || die "wrk warmup failed: $(cat "$TMP/warmup.txt")"
    read -r k0 s0 < <(core_ticks "$PROXY_CPU")
    read -r l0 _ < <(core_ticks "$LOAD_CPU")
    t0=$(cpu_ticks "$SL_PID")
    v0=$(cpu_ticks "$V1_PID")
    w0=$(cpu_ticks "$V2_PID")
    raw="$RAW/policies-$tag.txt"
    run_wrk "$DURATION" "$raw" || die "wrk failed: $(cat "$raw")"
    t1=$(cpu_ticks "$SL_PID")
    v1=$(cpu_ticks "$V1_PID")
    w1=$(cpu_ticks "$V2_PID")
    read -r k1 s1 < <(core_ticks "$PROXY_CPU")
    read -r l1 _ < <(core_ticks "$LOAD_CPU")
    R[$s,$r,rss_end]=$(awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$SL_PID/status")
    R[$s,$r,fds_end]=$(fd_count "$SL_PID")
    if [[ $s == B ]]; then
        # Let the last copies come back, then see what sluice keeps.
        sleep "$DRAIN"
        R[$s,$r,rss_drain]=$(awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$SL_PID/status")
        R[$s,$r,fds_drain]=$(fd_count "$SL_PID")
    fi
    kill -0 "$SL_PID" 2>/dev/null || die "sluice ($tag) died: $(cat "$SL_LOG")"
    R[$s,$r,rss]=$(awk -v k="$(hwm_kb "$SL_PID")" 'BEGIN{printf "%.1f", k/1024}')
    stop_pid "$samp_pid"
    stop_pid "$SL_PID"
    cp "$SL_LOG" "$RAW/policies-$tag-sluice.log"
    R[$s,$r,log_lines]=$(grep -c . "$SL_LOG" || true)

    line=$(grep '^BENCH ' "$raw") || die "no BENCH line in $raw"
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    [[ ${m[requests]} -gt 0 ]] || die "$tag: no requests completed (see $raw)"
    errs=$((m[err_connect] + m[err_read] + m[err_write] + m[err_status] + m[err_timeout]))
    if ((errs > 0)); then
        WARNINGS+=("$tag: $errs errors (connect ${m[err_connect]}, read ${m[err_read]}, write ${m[err_write]}, non-2xx/3xx ${m[err_status]}, timeout ${m[err_timeout]})")
    fi
    local d=${m[duration_us]} n=${m[requests]}
    R[$s,$r,n]=$n
    R[$s,$r,errs]=$errs
    R[$s,$r,rps]=$(awk -v n="$n" -v d="$d" 'BEGIN{printf "%.0f", n/(d/1e6)}')
    R[$s,$r,p50]=$(awk -v v="${m[p50_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$s,$r,p99]=$(awk -v v="${m[p99_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$s,$r,cpu]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN{printf "%.3f", t/hz/n*10000}')
    R[$s,$r,busy]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$s,$r,loadbusy]=$(awk -v t=$((l1 - l0)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$s,$r,v2cpu]=$(awk -v t=$((w1 - w0)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$s,$r,v1cpu]=$(awk -v t=$((v1 - v0)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    read -r "R[$s,$r,peak_rss]" "R[$s,$r,peak_fds]" "R[$s,$r,peak_v2fds]" < <(
        awk '{ if ($2 > r) r = $2; if ($3 > f) f = $3; if ($4 > v) v = $4 } END { printf "%.1f %d %d\n", r/1024, f, v }' \
            "$RAW/policies-$tag-samples.txt")
    own=$((t1 - t0))
    R[$s,$r,other]=$(awk -v t=$((k1 - k0 - own)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{v = 100*t/hz/(d/1e6); printf "%.0f", v < 0 ? 0 : v}')
    R[$s,$r,steal]=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v d="$d" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    if ((${R[$s,$r,other]} > 10 || ${R[$s,$r,steal]} > 5)); then
        WARNINGS+=("$tag: core $PROXY_CPU was busy with other work ${R[$s,$r,other]}% of the time (steal ${R[$s,$r,steal]}%): the row is disturbed")
    fi

    # What reached the backends during the whole life of this sluice (smoke request,
    # warmup and measured run).
    v1_after=$(backend_count "$V1_PORT")
    R[$s,$r,v1_got]=$((v1_after - v1_before - 1))
    if [[ $s == B ]]; then
        v2_after=$(backend_count "$V2_PORT")
        R[$s,$r,v2_got]=$((v2_after - v2_before - 1))
    fi
    log "  ${R[$s,$r,rps]} req/s, p50 ${R[$s,$r,p50]} ms, p99 ${R[$s,$r,p99]} ms, CPU ${R[$s,$r,cpu]} s/10k, core ${R[$s,$r,busy]}%, peak RSS ${R[$s,$r,rss]} MiB, peak fds ${R[$s,$r,peak_fds]}$([[ $s == B ]] && echo ", mirror copies received ${R[$s,$r,v2_got]} / primary ${R[$s,$r,v1_got]}, RSS after ${DRAIN}s drain ${R[$s,$r,rss_drain]} MiB"); core $PROXY_CPU other ${R[$s,$r,other]}%, steal ${R[$s,$r,steal]}%"
}

for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order=(A B C D); else order=(B A D C); fi
    for s in "${order[@]}"; do measure "$s" "$r"; done
done

# ---------------------------------------------------------------- report
maxof() { # scenario field
    local vals=() r
    for r in $(seq "$ROUNDS"); do vals+=("${R[$1,$r,$2]}"); done
    printf '%s\n' "${vals[@]}" | sort -g | tail -1
}
spread() { # scenario field: "min–max" over the rounds
    local vals=() r
    for r in $(seq "$ROUNDS"); do vals+=("${R[$1,$r,$2]}"); done
    printf '%s\n' "${vals[@]}" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "–" hi}'
}

P99_RATIO=$(ratio "$(med B p99)" "$(med A p99)")
P50_RATIO=$(ratio "$(med B p50)" "$(med A p50)")
CPU_RATIO=$(ratio "$(med D cpu)" "$(med C cpu)")
AB_CPU_RATIO=$(ratio "$(med B cpu)" "$(med A cpu)")
for r in $(seq "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        if ((${R[$s,$r,other]} > 10 || ${R[$s,$r,steal]} > 5)); then
            DISTURBED="${DISTURBED:+$DISTURBED; }other work on core $PROXY_CPU during some rows (see WARNING lines)"
            break 2
        fi
    done
done

{
    echo "# sluice policy overhead: mirroring, retries + DestinationRule"
    echo
    if [[ -n $DISTURBED ]]; then
        echo "**DISTURBED RUN**: $DISTURBED. Do not trust small differences."
        echo
    fi
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_desc); 1-min load before measuring: $LOAD_BEFORE; open-files limit: $NOFILE_NOW"
    echo "- sluice: $(sluice_version) (git state at report time; binary $SLUICE modified $(date -u -r "$SLUICE" '+%Y-%m-%d %H:%M UTC')); wrk: $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "- method: a fresh \`sluice run\` per row (\`TOKIO_WORKER_THREADS=1\`) on core $PROXY_CPU;" \
        "wrk (-t1 -c$CONCURRENCY, HTTP/1.1 keep-alive, GET /, Host: app) and both \`sluice backend\`s (1 tokio worker each) on core $LOAD_CPU;" \
        "${WARMUP}s warmup + ${DURATION}s per row; $ROUNDS round(s), order A B C D then B A D C alternately; figures are medians over the rounds"
    echo
    echo "| scenario | req/s | p50 ms | p99 ms | CPU s/10k req | sluice core busy % | peak RSS MiB | peak open fds | wrk errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        errs=0
        for r in $(seq "$ROUNDS"); do errs=$((errs + ${R[$s,$r,errs]})); done
        echo "| $s: ${TITLE[$s]} | $(med "$s" rps %.0f) | $(med "$s" p50 %.3f) | $(med "$s" p99 %.3f) | $(med "$s" cpu %.3f) | $(med "$s" busy %.0f) | $(maxof "$s" rss) | $(maxof "$s" peak_fds) | $errs |"
    done
    echo
    echo "- mirroring: p99(B)/p99(A) = **$P99_RATIO** (target ≤ 1.10: $(at_most "$P99_RATIO" 1.10)); p50(B)/p50(A) = $P50_RATIO; CPU per primary request B/A = $AB_CPU_RATIO"
    echo "- retries + DestinationRule: CPU per request D/C = **$CPU_RATIO** (target ≤ 1.10: $(at_most "$CPU_RATIO" 1.10))"
    echo
    echo "Mirror (scenario B), per round:"
    echo
    echo "| round | primary requests at v1 | copies received by v2 | peak v2 open fds (≈ copies in flight) | sluice peak open fds | sluice peak RSS MiB | RSS at end of load MiB | RSS ${DRAIN}s after load MiB | fds ${DRAIN}s after load | sluice log lines |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for r in $(seq "$ROUNDS"); do
        echo "| $r | ${R[B,$r,v1_got]} | ${R[B,$r,v2_got]} | ${R[B,$r,peak_v2fds]} | ${R[B,$r,peak_fds]} | ${R[B,$r,rss]} | ${R[B,$r,rss_end]} | ${R[B,$r,rss_drain]} | ${R[B,$r,fds_drain]} | ${R[B,$r,log_lines]} |"
    done
    echo
    echo "All rows:"
    echo
    echo "| row | req/s | p50 ms | p99 ms | CPU s/10k req | sluice core busy % | load core busy % (v1 / v2 backend %) | peak RSS MiB | core $PROXY_CPU other / steal % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for r in $(seq "$ROUNDS"); do
        if ((r % 2)); then order=(A B C D); else order=(B A D C); fi
        for s in "${order[@]}"; do
            name="$s round $r"
            if ((${R[$s,$r,errs]} > 0)); then name="$name (errors!)"; fi
            echo "| $name | ${R[$s,$r,rps]} | ${R[$s,$r,p50]} | ${R[$s,$r,p99]} | ${R[$s,$r,cpu]} | ${R[$s,$r,busy]} | ${R[$s,$r,loadbusy]} (${R[$s,$r,v1cpu]} / ${R[$s,$r,v2cpu]}) | ${R[$s,$r,rss]} | ${R[$s,$r,other]} / ${R[$s,$r,steal]} |"
        done
    done
    echo
    echo "Notes:"
    echo "- spread over the rounds: p99 A $(spread A p99), B $(spread B p99) ms; CPU s/10k C $(spread C cpu), D $(spread D cpu)."
    echo "- CPU s/10k req: utime+stime of sluice over the measured run per 10,000 completed (primary) requests; in B it includes the work of sending the mirror copies."
    echo "- peak RSS: VmHWM of that sluice process over its whole life (smoke request, warmup, measured run, and for B the ${DRAIN}s drain); peak open fds: sampled every 0.5 s. In the summary table both are the maximum over the rounds, the other columns the median."
    echo "- load core busy %: all work on core $LOAD_CPU (wrk + both backends); near 100 means the load side, not sluice, may limit req/s."
    echo "- copies received by v2 / primary requests at v1: counted by the backends over the sluice process's life (smoke + warmup + measured run); copies still in flight when counted are included (a copy is counted when it arrives)."
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} >"$TMP/report.md"

cp "$TMP/report.md" "$RESULTS/policies.md"
cat "$TMP/report.md"
log "done in $(( $(date +%s) - START_TS ))s; written to bench/results/policies.md (raw output in bench/results/raw/policies-*)"

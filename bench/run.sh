#!/usr/bin/env bash
# sluice vs nginx as HTTP/1.1 reverse proxies in front of the same upstream.
#
# Usage: bash bench/run.sh
#
# Environment knobs (all optional):
#   DURATION=10      seconds of each measured wrk run
#   WARMUP=2         seconds of the unmeasured wrk run before each measured run
#   CONCURRENCY="16 64"
#   ROUNDS=3         rounds per concurrency, nginx and sluice in alternating order; the
#                    table gives medians, the verdicts the median of each round's ratio
#   QUIET_LOAD=0.7 QUIET_WAIT=300   wait (at most QUIET_WAIT s) for 1-min load < QUIET_LOAD first
#   SLUICE_BIN=path  use this sluice binary instead of building target/release/sluice
#   PROXY_CPU=0 LOAD_CPU=1   cores for the proxies / for wrk and the upstream
#
# See bench/README.md for what is measured and how to read the result.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-"16 64"}
ROUNDS=${ROUNDS:-3}
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-300}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
START_TS=$(date +%s)

bench_init sluice-bench
ensure_tools nginx
build_sluice

write_report_lua "$TMP/report.lua"
mkdir -p "$RESULTS/raw"

# ---------------------------------------------------------------- upstream
UP_PORT=$(free_port)
log "upstream: sluice backend on 127.0.0.1:$UP_PORT (core $LOAD_CPU, 1 worker thread)"
TOKIO_WORKER_THREADS=1 taskset -c "$LOAD_CPU" "$SLUICE" backend \
    --listen "127.0.0.1:$UP_PORT" --name bench --version v1 >"$TMP/backend.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream did not come up: $(cat "$TMP/backend.log")"

# ---------------------------------------------------------------- nginx
NG_PORT=$(free_port)
NG_DIR="$TMP/nginx"
mkdir -p "$NG_DIR"/{client_body,proxy,fastcgi,uwsgi,scgi}
NG_USER=""
if [[ $(id -u) == 0 ]]; then NG_USER="user root;"; fi
cat >"$NG_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
$NG_USER
error_log stderr warn;
pid $NG_DIR/nginx.pid;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $NG_DIR/client_body;
    proxy_temp_path $NG_DIR/proxy;
    fastcgi_temp_path $NG_DIR/fastcgi;
    uwsgi_temp_path $NG_DIR/uwsgi;
    scgi_temp_path $NG_DIR/scgi;

    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        # nginx's defaults (1000) would close pooled connections periodically;
        # hyper (sluice, wrk's peer) has no such limit.
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$NG_PORT;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -t -e stderr -c "$NG_DIR/nginx.conf" -p "$NG_DIR" >"$TMP/nginx-t.log" 2>&1 \
    || die "nginx config test failed: $(cat "$TMP/nginx-t.log")"
log "nginx: 127.0.0.1:$NG_PORT (core $PROXY_CPU, worker_processes 1)"
taskset -c "$PROXY_CPU" "$NGINX" -e stderr -c "$NG_DIR/nginx.conf" -p "$NG_DIR" >"$TMP/nginx.log" 2>&1 &
NG_PID=$!
PIDS+=("$NG_PID")
wait_http "http://127.0.0.1:$NG_PORT/" || die "nginx did not come up: $(cat "$TMP/nginx.log")"
NG_WORKERS=$(pgrep -P "$NG_PID" | tr '\n' ' ')
[[ -n "$NG_WORKERS" ]] || die "no nginx worker process found"
# shellcheck disable=SC2206
NG_WORKERS=($NG_WORKERS)
PIDS+=("${NG_WORKERS[@]}")

# ---------------------------------------------------------------- sluice
SL_PORT=$(free_port)
ADMIN_PORT=$(free_port)
SL_DIR="$TMP/sluice"
mkdir -p "$SL_DIR"
cat >"$SL_DIR/bench.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench.default.svc.cluster.local]
  ports: [{number: $SL_PORT, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: $UP_PORT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench]
  http:
  - route:
    - destination: {host: bench, port: {number: $SL_PORT}}
EOF
log "sluice: mesh listener 127.0.0.1:$SL_PORT, admin 127.0.0.1:$ADMIN_PORT (core $PROXY_CPU, TOKIO_WORKER_THREADS=1)"
SLUICE_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SLUICE" run "$SL_DIR" \
    --no-gateway --no-watch --admin "127.0.0.1:$ADMIN_PORT" --mesh-address 127.0.0.1 \
    >"$TMP/sluice.log" 2>&1 &
SL_PID=$!
PIDS+=("$SL_PID")
wait_http "http://127.0.0.1:$ADMIN_PORT/ready" || die "sluice not ready: $(cat "$TMP/sluice.log")"
smoke=$(curl -sf --max-time 2 -H 'Host: bench' "http://127.0.0.1:$SL_PORT/") \
    || die "request through sluice failed: $(cat "$TMP/sluice.log")"
[[ $smoke == "bench v1 - request"* ]] || die "unexpected answer through sluice: $smoke"
smoke=$(curl -sf --max-time 2 "http://127.0.0.1:$NG_PORT/") || die "request through nginx failed"
[[ $smoke == "bench v1 - request"* ]] || die "unexpected answer through nginx: $smoke"

# ---------------------------------------------------------------- measure
declare -A R   # R[target,c,field]
TARGETS=(upstream nginx sluice)
declare -A URL=(
    [upstream]="http://127.0.0.1:$UP_PORT/"
    [nginx]="http://127.0.0.1:$NG_PORT/"
    [sluice]="http://127.0.0.1:$SL_PORT/"
)
declare -A MEASURED_PIDS=(
    [upstream]="$UP_PID"
    [nginx]="$NG_PID ${NG_WORKERS[*]}"
    [sluice]="$SL_PID"
)
# The process whose VmHWM is reported: the nginx worker (the master only
# forks it and shares most of its pages), the single process otherwise.
declare -A RSS_PID=([upstream]="$UP_PID" [nginx]="${NG_WORKERS[0]}" [sluice]="$SL_PID")
WARNINGS=()
SL_THREADS_BEFORE=$(thread_cpu "$SL_PID")

run_wrk() { # target concurrency seconds outfile
    local target=$1 c=$2 secs=$3 out=$4 hdr=()
    if [[ $target == sluice ]]; then hdr=(-H 'Host: bench'); fi
    timeout $((secs + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$c" -d"${secs}s" --latency \
        -s "$TMP/report.lua" "${hdr[@]}" "${URL[$target]}" >"$out" 2>&1
}

measure_row() { # target concurrency round
    local target=$1 c=$2 r=$3 k=$1,$2,$3
    local pids raw line k0 s0 k1 s1 t0 t1 errs own other steal
    # shellcheck disable=SC2206
    pids=(${MEASURED_PIDS[$target]})
    log "$target c=$c round $r/$ROUNDS: warmup ${WARMUP}s, measure ${DURATION}s"
    reset_hwm "${RSS_PID[$target]}"
    run_wrk "$target" "$c" "$WARMUP" "$TMP/warmup.txt" || die "wrk warmup failed: $(cat "$TMP/warmup.txt")"
    read -r k0 s0 < <(core_ticks "$PROXY_CPU")
    t0=$(cpu_ticks "${pids[@]}")
    raw="$RESULTS/raw/$target-c$c-r$r.txt"
    run_wrk "$target" "$c" "$DURATION" "$raw" || die "wrk failed: $(cat "$raw")"
    t1=$(cpu_ticks "${pids[@]}")
    read -r k1 s1 < <(core_ticks "$PROXY_CPU")
    line=$(grep '^BENCH ' "$raw") || die "no BENCH line in $raw"
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    [[ ${m[requests]} -gt 0 ]] || die "$target c=$c: no requests completed (see $raw)"
    errs=$((m[err_connect] + m[err_read] + m[err_write] + m[err_status] + m[err_timeout]))
    if ((errs > 0)); then
        WARNINGS+=("$target c=$c round $r: $errs errors (connect ${m[err_connect]}, read ${m[err_read]}, write ${m[err_write]}, non-2xx/3xx ${m[err_status]}, timeout ${m[err_timeout]})")
    fi
    R[$k,rps]=$(awk -v n="${m[requests]}" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", n/(d/1e6)}')
    R[$k,p50]=$(awk -v v="${m[p50_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$k,p99]=$(awk -v v="${m[p99_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$k,cpu]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${m[requests]}" 'BEGIN{printf "%.3f", t/hz/n*10000}')
    R[$k,busy]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$k,rss]=$(awk -v k="$(hwm_kb "${RSS_PID[$target]}")" 'BEGIN{printf "%.1f", k/1024}')
    R[$k,errs]=$errs
    # Anything else that ran on the proxies' core during the row (other
    # processes on the machine, the idle proxy) and hypervisor steal time.
    own=$((t1 - t0))
    if [[ $target == upstream ]]; then own=0; fi
    other=$(awk -v t=$((k1 - k0 - own)) -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{v = 100*t/hz/(d/1e6); printf "%.0f", v < 0 ? 0 : v}')
    steal=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$k,other]=$other
    R[$k,steal]=$steal
    if ((other > 10 || steal > 5)); then
        WARNINGS+=("$target c=$c round $r: core $PROXY_CPU was busy with other work ${other}% of the time (steal ${steal}%): the row is disturbed, run again on a quiet machine")
    fi
    log "  ${R[$k,rps]} req/s, p50 ${R[$k,p50]} ms, p99 ${R[$k,p99]} ms, CPU ${R[$k,cpu]} s/10k, core ${R[$k,busy]}%, RSS ${R[$k,rss]} MiB; core $PROXY_CPU other ${other}%, steal ${steal}%"
}

# Largest value of a field over the rounds.
max_over_rounds() { # target concurrency field
    local r v=0
    for r in $(seq "$ROUNDS"); do
        v=$(awk -v a="$v" -v b="${R[$1,$2,$r,$3]}" 'BEGIN{print (b > a) ? b : a}')
    done
    echo "$v"
}

DISTURBED=""
if ! wait_quiet "$QUIET_LOAD" "$QUIET_WAIT"; then
    read -r load _ </proc/loadavg
    DISTURBED="1-min load average was still $load (≥ $QUIET_LOAD) after waiting ${QUIET_WAIT}s"
fi

for c in $CONCURRENCY; do
    for r in $(seq "$ROUNDS"); do
        # nginx and sluice swap places every round, so slow drift favours neither.
        if ((r % 2)); then order=(upstream nginx sluice); else order=(upstream sluice nginx); fi
        for target in "${order[@]}"; do measure_row "$target" "$c" "$r"; done
        R[ratio,$c,$r,rps]=$(ratio "${R[sluice,$c,$r,rps]}" "${R[nginx,$c,$r,rps]}")
        R[ratio,$c,$r,cpu]=$(ratio "${R[sluice,$c,$r,cpu]}" "${R[nginx,$c,$r,cpu]}")
    done
    for target in "${TARGETS[@]}"; do
        for f in rps p50 p99 cpu busy; do R[$target,$c,$f]=$(med "$target,$c" "$f"); done
        R[$target,$c,rss]=$(max_over_rounds "$target" "$c" rss)
        R[$target,$c,other]=$(max_over_rounds "$target" "$c" other)
        R[$target,$c,steal]=$(max_over_rounds "$target" "$c" steal)
        errs=0
        for r in $(seq "$ROUNDS"); do errs=$((errs + R[$target,$c,$r,errs])); done
        R[$target,$c,errs]=$errs
    done
    R[ratio,$c,rps]=$(med "ratio,$c" rps %.2f)
    R[ratio,$c,cpu]=$(med "ratio,$c" cpu %.2f)
done
SL_THREADS_AFTER=$(thread_cpu "$SL_PID")
NG_MASTER_RSS=$(awk -v k="$(hwm_kb "$NG_PID")" 'BEGIN{printf "%.1f", k/1024}')

# sluice threads that did work during the measurements (TOKIO_WORKER_THREADS check).
# Tokio names its worker (and blocking-pool) threads tokio-rt-worker (older
# releases: tokio-runtime-worker, truncated to tokio-runtime-w).
declare -A before=()
for e in $SL_THREADS_BEFORE; do before[${e%:*}]=${e##*:}; done
busy_threads=()
sl_workers=0
for e in $SL_THREADS_AFTER; do
    thread=${e%:*}
    case $thread in tokio-rt-worker/* | tokio-runtime-w*/*) sl_workers=$((sl_workers + 1)) ;; esac
    d=$(( ${e##*:} - ${before[$thread]:-0} ))
    if ((d > 0)); then
        busy_threads+=("$thread $(awk -v t="$d" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t/hz}') s")
    fi
done

# ---------------------------------------------------------------- report
verdict() { # value op limit
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{ ok = (op == ">=") ? v >= l : v <= l; print ok ? "met" : "NOT met" }'
}

{
    echo "# sluice vs nginx reverse-proxy benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_desc)"
    echo "- sluice: $(sluice_version)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); wrk: $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "- method: proxies on core $PROXY_CPU, wrk (-t1) and upstream (\`sluice backend\`, 1 tokio worker) on core $LOAD_CPU;" \
        "1 worker each (nginx \`worker_processes 1\`, sluice \`TOKIO_WORKER_THREADS=1\`);" \
        "HTTP/1.1 keep-alive, GET /; ${WARMUP}s warmup + ${DURATION}s per row;" \
        "$ROUNDS round(s) per concurrency, nginx and sluice in alternating order; the table gives medians over the rounds (peak RSS: maximum)"
    if [[ -n $DISTURBED ]]; then echo "- **DISTURBED**: $DISTURBED"; fi
    echo
    echo "| target | concurrency | req/s | p50 ms | p99 ms | CPU s/10k req | peak RSS MiB | proxy core busy % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for c in $CONCURRENCY; do
        for target in "${TARGETS[@]}"; do
            name=$target
            if [[ $target == upstream ]]; then name="upstream (direct)"; fi
            if [[ ${R[$target,$c,errs]} -gt 0 ]]; then name="$name (errors!)"; fi
            echo "| $name | $c | ${R[$target,$c,rps]} | ${R[$target,$c,p50]} | ${R[$target,$c,p99]} | ${R[$target,$c,cpu]} | ${R[$target,$c,rss]} | ${R[$target,$c,busy]} |"
        done
    done
    echo
    for c in $CONCURRENCY; do
        tr=${R[ratio,$c,rps]}
        cr=${R[ratio,$c,cpu]}
        rounds_rps=() rounds_cpu=()
        for r in $(seq "$ROUNDS"); do
            rounds_rps+=("${R[ratio,$c,$r,rps]}")
            rounds_cpu+=("${R[ratio,$c,$r,cpu]}")
        done
        echo "- c=$c: sluice/nginx throughput = **$tr** (target ≥ 0.80: $(verdict "$tr" '>=' 0.80)); per round: ${rounds_rps[*]}"
        echo "- c=$c: sluice/nginx CPU per request = **$cr** (target ≤ 1.25: $(verdict "$cr" '<=' 1.25)); per round: ${rounds_cpu[*]}"
    done
    echo
    echo "The verdicts use the median over the rounds of each round's ratio: nginx and sluice of one round ran minutes apart at most, so their ratio is steadier than either figure alone."
    echo
    echo "Notes:"
    echo "- CPU s/10k req: utime+stime of the measured process(es) over the measured run (nginx: master + worker; upstream row: the backend itself) per 10,000 completed requests."
    echo "- peak RSS: VmHWM, reset (clear_refs) before each row's warmup; nginx: the worker (master: ${NG_MASTER_RSS} MiB)."
    echo "- proxy core busy %: that CPU time over the run's wall time; near 100 means the proxy's core was the bottleneck, well below means the load side (wrk + upstream on core $LOAD_CPU) was. Upstream rows: the backend's share of core $LOAD_CPU, which it shares with wrk."
    busy_list=$(IFS=,; echo "${busy_threads[*]:-none}" | sed 's/,/, /g')
    echo "- sluice threads (TOKIO_WORKER_THREADS check): $sl_workers tokio worker/blocking thread(s) at the end; threads (name/tid) that used CPU during the measurements: $busy_list."
    disturb=()
    for c in $CONCURRENCY; do
        for target in "${TARGETS[@]}"; do
            disturb+=("$target c=$c ${R[$target,$c,other]}%/${R[$target,$c,steal]}%")
        done
    done
    echo "- other work / steal on core $PROXY_CPU during each row, the maximum over the rounds (should be ~0): $(IFS=,; echo "${disturb[*]}" | sed 's/,/, /g')."
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} >"$TMP/report.md"

cp "$TMP/report.md" "$RESULTS/latest.md"
cat "$TMP/report.md"
log "done in $(( $(date +%s) - START_TS ))s; written to bench/results/latest.md (raw wrk output in bench/results/raw/)"

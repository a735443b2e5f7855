#!/usr/bin/env bash
# Requests while reloads compile: p99 and errors through the gateway under wrk, quiet and
# during RELOADS reloads of a large config, with the default runtime and with `--workers 1`
# (see bench/README.md, "Requests during reloads").
#
# Usage: bash bench/reload_load.sh
#
# Environment knobs (all optional):
#   SERVICES=10000     generated services (bench/gen_services.py) besides the measured one
#   RELOADS=20         reloads during the loaded run (each one edits a weight first)
#   DURATION=10        seconds of the quiet run (the loaded run lasts until the reloads end)
#   CONNS=16           wrk connections
#   WORKER_SETS="default 1"   runtimes to try: "default" (one worker per core) or a count
#   HARNESS=python     how the reloads are driven: `python` (bench/reload_loop.py, one process
#                      for all of them) or `shell` (a sed, two curls and an awk per reload,
#                      processes that take CPU from the proxy under load)
#   SLUICE_BIN=path    use this sluice binary instead of building target/release/sluice
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=reload-load
SERVICES=${SERVICES:-10000}
RELOADS=${RELOADS:-20}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
WORKER_SETS=${WORKER_SETS:-"default 1"}
HARNESS=${HARNESS:-python}

bench_init sluice-reload-load
ensure_tools
build_sluice
mkdir -p "$RESULTS"
write_report_lua "$TMP/report.lua"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }
config_version() {
    curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '/^sluice_config_version / {print $2}'
}
# "p99_ms errors requests" from a wrk output with the report script's BENCH line.
wrk_figures() {
    awk '/^BENCH/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "%.2f %d %d\n", f["p99_us"] / 1000, f["err_connect"] + f["err_read"] + f["err_write"] + f["err_status"] + f["err_timeout"], f["requests"]
    }' "$1"
}

UP_PORT=$(free_port)
log "upstream: sluice backend on 127.0.0.1:$UP_PORT"
TOKIO_WORKER_THREADS=1 "$SLUICE" backend --listen "127.0.0.1:$UP_PORT" --name bench --version v1 \
    >"$TMP/backend.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream did not come up: $(cat "$TMP/backend.log")"

dir="$TMP/config"
gw_port=$(free_port)
log "generating $SERVICES services in $dir"
python3 "$ROOT/bench/gen_services.py" "$dir" "$SERVICES" 9080 "$gw_port" 100
# The measured service: `bench.example.com` through the generated Gateway to the real upstream
# (its service port is one the mesh listener can take: the upstream's own is in use).
svc_port=$(free_port)
cat >"$dir/bench.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench, namespace: bench}
spec:
  hosts: [bench.example.com]
  ports: [{number: $svc_port, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: $UP_PORT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench, namespace: bench}
spec:
  hosts: [bench.example.com]
  gateways: [istio-system/public]
  http:
  - route: [{destination: {host: bench.example.com, port: {number: $svc_port}}}]
YAML

ROWS=()
for workers in $WORKER_SETS; do
    admin_port=$(free_port)
    worker_args=()
    [[ $workers != default ]] && worker_args=(--workers "$workers")
    log "workers=$workers: starting sluice with $SERVICES services"
    SLUICE_LOG=warn "$SLUICE" "${worker_args[@]}" run "$dir" --labels istio=ingressgateway \
        --gateway-address 127.0.0.1 --mesh-address 127.0.0.1 --admin "127.0.0.1:$admin_port" \
        >"$TMP/sluice-$workers.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$admin_port/ready" || die "sluice not ready: $(tail -5 "$TMP/sluice-$workers.log")"
    url="http://127.0.0.1:$gw_port/"
    for _ in $(seq 600); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.example.com' "$url") == 200 ]] && break
        sleep 0.1
    done

    log "workers=$workers: quiet run (${DURATION}s, $CONNS connections)"
    timeout $((DURATION + 30)) "$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/report.lua" \
        -H 'Host: bench.example.com' "$url" >"$TMP/quiet-$workers.txt" 2>&1 || die "wrk failed: $(cat "$TMP/quiet-$workers.txt")"
    read -r quiet_p99 quiet_err quiet_req < <(wrk_figures "$TMP/quiet-$workers.txt")

    log "workers=$workers: $RELOADS reloads under load"
    # Long enough for every reload; wrk is stopped once they are done.
    timeout 900 "$WRK" -t1 -c"$CONNS" -d600s --latency -s "$TMP/report.lua" \
        -H 'Host: bench.example.com' "$url" >"$TMP/loaded-$workers.txt" 2>&1 &
    wrk_pid=$!
    sleep 1
    reload_s=() admin_ms=()
    t_start=$(now)
    if [[ $HARNESS == python ]]; then
        python3 "$ROOT/bench/reload_loop.py" "$admin_port" "$dir/svc-00000.yaml" "$RELOADS" \
            >"$TMP/reloads-$workers.txt" || die "reloads failed: $(tail -3 "$TMP/reloads-$workers.txt")"
        while read -r s a; do
            reload_s+=("$s")
            admin_ms+=("$a")
        done <"$TMP/reloads-$workers.txt"
    else
        for r in $(seq "$RELOADS"); do
            if ((r % 2)); then from=(90 10) to=(80 20); else from=(80 20) to=(90 10); fi
            sed -i -e "0,/weight: ${from[0]}\$/s//weight: ${to[0]}/" \
                -e "0,/weight: ${from[1]}\$/s//weight: ${to[1]}/" "$dir/svc-00000.yaml"
            t0=$(now)
            curl -sf -o /dev/null --max-time 120 -X POST "http://127.0.0.1:$admin_port/api/reload" &
            reload_pid=$!
            # The admin API answers while the reload compiles.
            sleep 0.05
            a=$(curl -s -o /dev/null -w '%{time_total}' --max-time 30 "http://127.0.0.1:$admin_port/ready" || echo 30)
            admin_ms+=("$(awk -v t="$a" 'BEGIN{printf "%.1f", t * 1000}')")
            wait "$reload_pid" || die "POST /api/reload $r failed"
            reload_s+=("$(elapsed "$t0" "$(now)")")
        done
    fi
    loaded_s=$(elapsed "$t_start" "$(now)")
    sleep 1
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    read -r loaded_p99 loaded_err loaded_req < <(wrk_figures "$TMP/loaded-$workers.txt")
    [[ -n ${loaded_p99:-} ]] || die "no wrk figures: $(cat "$TMP/loaded-$workers.txt")"
    stop_pid "$pid"

    admin_max=$(printf '%s\n' "${admin_ms[@]}" | sort -g | tail -1)
    ROWS+=("| $workers | $quiet_p99 ms | $quiet_err | $loaded_p99 ms | $(ratio "$loaded_p99" "$quiet_p99") | $loaded_err | $loaded_req in ${loaded_s} s | $(median "${reload_s[@]}") s | ${admin_max} ms |")
done

{
    echo "## Requests during reloads: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "sluice $(sluice_version); $(machine_desc); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "$SERVICES generated services + the measured one; wrk -t1 -c$CONNS through the gateway; $RELOADS reloads (each: one weight edited, then POST /api/reload), driven by the $HARNESS harness."
    echo
    echo "| workers | quiet p99 | quiet errors | p99 during reloads | ratio (target ≤ 2) | errors during reloads | requests during reloads | reload (median) | slowest GET /ready during a reload |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$RESULTS/reload_load.md"

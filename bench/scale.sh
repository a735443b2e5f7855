#!/usr/bin/env bash
# The control path at scale: start-up, memory, one edited weight, and `sluice analyze`
# for N generated services (see bench/README.md, "Scale").
#
# Usage: bash bench/scale.sh
#
# Environment knobs (all optional):
#   SERVICES="1000 10000"  service counts, one table row each
#   EDITS=3                weight edits per row (the table gives the median, min-max in notes)
#   PER_FILE=100           services per generated file
#   WORKERS=               `sluice --workers` (default: one per core)
#   PERF=0                 1: also count instructions of `sluice analyze` (perf stat; needs a PMU)
#   HARNESS=python         how an edit is timed: `python` (bench/edit_applied.py: one process
#                          writes and polls every 2 ms) or `shell` (sed, then curl + awk per
#                          5 ms poll, as rounds before 2026-12-06 did: 25-35 ms slower here)
#   SLUICE_BIN=path        use this sluice binary instead of building target/release/sluice
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=scale
SERVICES=${SERVICES:-"1000 10000"}
EDITS=${EDITS:-3}
HARNESS=${HARNESS:-python}
PER_FILE=${PER_FILE:-100}
WORKERS=${WORKERS:-}
PERF=${PERF:-0}

bench_init sluice-scale
for t in curl python3 awk /usr/bin/time; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
build_sluice
mkdir -p "$RESULTS"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }
rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
config_version() {
    curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '/^sluice_config_version / {print $2}'
}
# Waits until the config version served on admin port $1 is above $2 (at most 120 s).
wait_version_above() {
    local v
    for _ in $(seq 24000); do
        v=$(config_version "$1" || true)
        if [[ -n $v ]] && awk -v a="$v" -v b="$2" 'BEGIN{exit !(a > b)}'; then return 0; fi
        sleep 0.005
    done
    return 1
}
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s-%s", lo, hi}'; }

WORKER_ARGS=()
[[ -n $WORKERS ]] && WORKER_ARGS=(--workers "$WORKERS")
ROWS=()
NOTES=()
for n in $SERVICES; do
    dir="$TMP/config-$n"
    svc_port=$(free_port)
    gw_port=$(free_port)
    admin_port=$(free_port)
    log "N=$n: generating $n services in $dir ($PER_FILE per file)"
    python3 "$ROOT/bench/gen_services.py" "$dir" "$n" "$svc_port" "$gw_port" "$PER_FILE"

    log "N=$n: starting sluice (gateway role, admin 127.0.0.1:$admin_port)"
    t0=$(now)
    SLUICE_LOG=warn "$SLUICE" "${WORKER_ARGS[@]}" run "$dir" --labels istio=ingressgateway \
        --gateway-address 127.0.0.1 --mesh-address 127.0.0.1 --admin "127.0.0.1:$admin_port" \
        >"$TMP/sluice-$n.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    ready=0
    for _ in $(seq 60000); do
        kill -0 "$pid" 2>/dev/null || die "sluice exited: $(tail -5 "$TMP/sluice-$n.log")"
        if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$admin_port/ready"; then
            ready=1
            break
        fi
        sleep 0.01
    done
    ((ready)) || die "sluice not ready: $(tail -5 "$TMP/sluice-$n.log")"
    start_s=$(elapsed "$t0" "$(now)")
    sleep 2
    idle_mb=$(rss_mb "$pid")

    # One weight edited (90/10 -> 80/20 and back), from the write to the new version served.
    edit_s=() peak_mb=() post_s=()
    for e in $(seq "$EDITS"); do
        if ((e % 2)); then from=(90 10) to=(80 20); else from=(80 20) to=(90 10); fi
        reset_hwm "$pid"
        if [[ $HARNESS == shell ]]; then
            v=$(config_version "$admin_port")
            t0=$(now)
            sed -i -e "0,/weight: ${from[0]}\$/s//weight: ${to[0]}/" \
                -e "0,/weight: ${from[1]}\$/s//weight: ${to[1]}/" "$dir/svc-00000.yaml"
            wait_version_above "$admin_port" "$v" || die "edit $e not applied"
            edit_s+=("$(elapsed "$t0" "$(now)")")
        else
            edit_s+=("$(python3 "$ROOT/bench/edit_applied.py" "$admin_port" "$dir/svc-00000.yaml" \
                "${from[0]}" "${to[0]}" "${from[1]}" "${to[1]}")") || die "edit $e not applied"
        fi
        peak_mb+=("$(hwm_mb "$pid")")
        sleep 0.5
        # The same reload without the watcher's debounce: POST /api/reload answers once applied.
        t0=$(now)
        curl -sf -o /dev/null --max-time 120 -X POST "http://127.0.0.1:$admin_port/api/reload" \
            || die "POST /api/reload failed"
        post_s+=("$(elapsed "$t0" "$(now)")")
        sleep 0.5
    done
    stop_pid "$pid"

    # Started again on the same files: the first start pays for memory the machine had to
    # reclaim after generating the tree (large on a VM that returns freed memory to its host).
    t0=$(now)
    SLUICE_LOG=warn "$SLUICE" "${WORKER_ARGS[@]}" run "$dir" --labels istio=ingressgateway \
        --gateway-address 127.0.0.1 --mesh-address 127.0.0.1 --admin "127.0.0.1:$admin_port" \
        >"$TMP/sluice-$n-again.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    again_s="-"
    for _ in $(seq 60000); do
        kill -0 "$pid" 2>/dev/null || break
        if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$admin_port/ready"; then
            again_s=$(elapsed "$t0" "$(now)")
            break
        fi
        sleep 0.01
    done
    stop_pid "$pid"

    log "N=$n: sluice analyze"
    /usr/bin/time -f "%e %M" -o "$TMP/analyze-time" "$SLUICE" analyze "$dir" >/dev/null 2>&1 || true
    read -r analyze_s analyze_kb <"$TMP/analyze-time"
    analyze_ins="-"
    if [[ $PERF == 1 ]] && command -v perf >/dev/null 2>&1; then
        analyze_ins=$(perf stat -x, -e instructions:u "$SLUICE" analyze "$dir" 2>&1 >/dev/null \
            | awk -F, '/instructions/ {printf "%.2f G", $1 / 1e9}') || analyze_ins="-"
        [[ -n $analyze_ins ]] || analyze_ins="-"
    fi

    ROWS+=("| $(printf "%'d" "$n") | ${start_s} s | ${idle_mb} MB | $(median "${edit_s[@]}") s | $(median "${peak_mb[@]}") MB | $(median "${post_s[@]}") s | ${analyze_s} s, $((analyze_kb / 1024)) MB | ${analyze_ins} |")
    NOTES+=("- N=$n: started again on the same files: ready in ${again_s} s")
    NOTES+=("- N=$n: edit → applied $(minmax "${edit_s[@]}") s, peak RSS $(minmax "${peak_mb[@]}") MB, POST /api/reload $(minmax "${post_s[@]}") s over $EDITS edits")
    rm -rf "$dir"
done

{
    echo "## Scale: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "sluice $(sluice_version); $(machine_desc); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| services | start → /ready | RSS idle | one weight edited → applied | peak RSS during that reload | POST /api/reload | \`analyze\` | \`analyze\` instructions |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    printf '%s\n' "${NOTES[@]}"
    echo "- edit → applied includes the watcher's 20 ms debounce; POST /api/reload does not. Edits timed by the $HARNESS harness (see HARNESS in the script)."
} | tee "$RESULTS/scale.md"

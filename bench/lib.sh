# Shared helpers of the bench/ scripts (run.sh, policies.sh, telemetry.sh). Source it, do not run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets ROOT (the workspace), RESULTS (bench/results), CLK_TCK, and, after
# bench_init, TMP (a temp dir removed on exit) and PIDS (processes killed on exit).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$ROOT/bench/results"
CLK_TCK=$(getconf CLK_TCK)
LOG_TAG=${LOG_TAG:-bench}

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
# Kills every pid in PIDS (and their children: nginx workers, in case the
# master dies first), TERM then KILL after 5 s, and removes TMP.
cleanup() {
    local rc=$? pid child
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        for child in $(pgrep -P "$pid" 2>/dev/null || true); do PIDS+=("$child"); done
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        if [[ $alive == 0 ]]; then break; fi
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}

# Creates TMP and PIDS and installs the traps. Call it from the script's top level.
bench_init() {
    TMP=$(mktemp -d "/tmp/${1:-sluice-bench}.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Stops one process started by the script (TERM, then KILL after 5 s) and
# drops it from PIDS.
stop_pid() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- tools
# ensure_tools [nginx]: installs wrk (and nginx-light with "nginx") with apt-get
# when missing, then checks the other tools the scripts use. Sets WRK (and NGINX).
ensure_tools() {
    local want_nginx=0 t
    [[ ${1:-} == nginx ]] && want_nginx=1
    export DEBIAN_FRONTEND=noninteractive
    local need=()
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    if ((want_nginx)) && ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
        need+=(nginx-light)
    fi
    if ((${#need[@]})); then
        log "installing: ${need[*]}"
        if ! apt-get install -y "${need[@]}" >&2; then
            log "install failed; running apt-get update and retrying"
            apt-get update >&2
            if ! apt-get install -y "${need[@]}" >&2; then
                # nginx-light is not in every Debian release; fall back to nginx.
                need=("${need[@]/nginx-light/nginx}")
                apt-get install -y "${need[@]}" >&2
            fi
        fi
    fi
    if ((want_nginx)); then NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx); fi
    WRK=$(command -v wrk)
    for t in taskset curl python3 pgrep awk timeout; do
        command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
    done
}

# ---------------------------------------------------------------- build
# Sets SLUICE: $SLUICE_BIN if given, else target/release/sluice after building it.
build_sluice() {
    if [[ -n "${SLUICE_BIN:-}" ]]; then
        SLUICE=$SLUICE_BIN
    else
        log "building sluice (cargo build --release -p sluice)"
        (cd "$ROOT" && cargo build --release -p sluice >&2)
        SLUICE="$ROOT/target/release/sluice"
    fi
    [[ -x "$SLUICE" ]] || die "no sluice binary at $SLUICE"
}

# "sluice 0.1.0 (git abc1234, dirty tree)" for reports.
sluice_version() {
    echo "$("$SLUICE" --version 2>/dev/null || echo '?') (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -1) ]] && echo ', dirty tree'))"
}

machine_desc() {
    echo "$(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
}

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# utime+stime (clock ticks) summed over the given pids.
cpu_ticks() {
    local total=0 pid stat rest
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat") || die "process $pid is gone"
        rest=${stat##*) }   # fields from 3 (state) on; comm may contain spaces
        # shellcheck disable=SC2086
        set -- $rest
        total=$((total + ${12} + ${13}))   # fields 14 (utime) and 15 (stime)
    done
    echo "$total"
}

# "busy steal" clock ticks of one core from /proc/stat (busy = user nice system irq softirq).
core_ticks() {
    awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat
}

# VmHWM in kB of one pid.
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Reset VmHWM to the current RSS (Linux clear_refs "5"); best effort.
reset_hwm() {
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

wait_http() { # url [curl args...]
    local url=$1; shift
    for _ in $(seq 100); do
        curl -sf -o /dev/null --max-time 1 "$@" "$url" && return 0
        sleep 0.1
    done
    return 1
}

# Writes a wrk script whose only hook is done(): it adds no per-request Lua
# work and prints exact figures (latencies are in microseconds) on a BENCH line.
write_report_lua() {
    cat >"$1" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
}

# Threads of a process as name/tid:ticks (utime+stime), e.g. "tokio-rt-worker/4242:812".
thread_cpu() {
    local t stat rest out=()
    for t in /proc/"$1"/task/*; do
        stat=$(<"$t/stat") || continue
        rest=${stat##*) }
        # shellcheck disable=SC2086
        set -- $rest
        out+=("$(<"$t/comm" tr ' ' '_')/${t##*/}:$((${12} + ${13}))")
    done
    echo "${out[*]}"
}

# Waits until the 1-minute load average is below $1 (default 0.7), polling
# every 10 s for at most $2 seconds (default 600). Returns 1 on timeout.
wait_quiet() {
    local limit=${1:-0.7} max=${2:-600} start load
    start=$(date +%s)
    while :; do
        read -r load _ </proc/loadavg
        if awk -v l="$load" -v m="$limit" 'BEGIN{exit !(l < m)}'; then
            log "machine quiet: 1-min load $load < $limit"
            return 0
        fi
        if (( $(date +%s) - start >= max )); then
            log "machine still busy after ${max}s (1-min load $load): measuring anyway, results marked disturbed"
            return 1
        fi
        log "waiting for a quiet machine: 1-min load $load (want < $limit)"
        sleep 10
    done
}

# ---------------------------------------------------------------- report helpers
# Rounds of a measurement live in R[scenario,round,field] (an associative array of the caller)
# and ROUNDS says how many there are.
median() { # values...
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Median over the rounds of one field, formatted with printf format $3.
med() { # scenario field [format]
    local vals=() r
    for r in $(seq "$ROUNDS"); do vals+=("${R[$1,$r,$2]}"); done
    awk -v v="$(median "${vals[@]}")" -v f="${3:-%s}" 'BEGIN{printf f, v}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "n/a"; else printf "%.2f", a/b }'; }
# "met" when a ratio is at most the limit.
at_most() { awk -v v="$1" -v l="$2" 'BEGIN{ print (v != "n/a" && v <= l) ? "met" : "NOT met" }'; }

#!/usr/bin/env bash
# What a Sidecar's egress scope saves: 10,000 generated services (bench/gen_services.py, 100 per
# namespace), a mesh-role proxy in ns-0 (`--no-gateway`), without and then with a Sidecar
# `egress: [{hosts: ["./*"]}]` in ns-0. Reports start -> /ready, RSS 2 s after ready, three
# `POST /api/reload` round trips and the number of clusters compiled (see bench/README.md).
#
# Usage: bash bench/scope.sh      SERVICES=10000  SLUICE_BIN=target/release/sluice
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES=${SERVICES:-10000}
BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
[[ -x $BIN ]] || { echo "no sluice binary at $BIN (cargo build --release -p sluice, or set SLUICE_BIN)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 "$ROOT/bench/gen_services.py" "$TMP/cfg" "$SERVICES" 19080 19443 100 >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b - a}'; }

measure() {
    local label=$1 admin t0 t1 pid rss reloads="" a b clusters
    admin=$(free_port)
    t0=$(date +%s.%N)
    SLUICE_LOG=warn "$BIN" run "$TMP/cfg" --namespace ns-0 --no-gateway --mesh-address 127.0.0.1 \
        --admin "127.0.0.1:$admin" --no-watch >"$TMP/log-$label" 2>&1 &
    pid=$!
    for _ in $(seq 60000); do
        kill -0 "$pid" 2>/dev/null || { tail -5 "$TMP/log-$label" >&2; exit 1; }
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$admin/ready" && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    sleep 2
    rss=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    for _ in 1 2 3; do
        a=$(date +%s.%N)
        curl -sf -o /dev/null --max-time 600 -X POST "http://127.0.0.1:$admin/api/reload"
        b=$(date +%s.%N)
        reloads="$reloads $(elapsed "$a" "$b")"
    done
    clusters=$(curl -sf "http://127.0.0.1:$admin/clusters?limit=1000000" | grep -c 'outbound|' || true)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    printf '%-14s start->ready %6ss  RSS %5s MB  POST /api/reload%s s  cluster lines %s\n' \
        "$label" "$(elapsed "$t0" "$t1")" "$rss" "$reloads" "$clusters"
}

echo "# $SERVICES services, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $BIN"
measure no-sidecar
cat >"$TMP/cfg/zz-sidecar.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns-0}
spec:
  egress: [{hosts: ["./*"]}]
YAML
measure sidecar-ns-0

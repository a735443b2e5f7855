#!/usr/bin/env bash
# sluice vs nginx terminating TLS (HTTP/1.1) in front of the same plain-text upstream, with the
# same certificate: ECDSA P-256 and RSA 2048.
#
# Usage: bash bench/tls.sh
#
# Three scenarios per key type:
#   keepalive  - wrk over HTTPS keep-alive connections: CPU per request (target ≤ 1.10 × nginx)
#   full       - HANDSHAKE_C parallel `openssl s_time -new -www /`: a new connection and a full
#                TLS 1.3 handshake per request; handshakes per CPU-second (target ≥ 0.90 × nginx)
#   resumed    - wrk with `Connection: close`: a new connection per request, but wrk keeps its
#                TLS session (SSL_clear), so both servers resume it (nginx by ticket, sluice from
#                its session cache); reported, no target
#
# Environment knobs (all optional):
#   DURATION=10 WARMUP=2 ROUNDS=3 KEEPALIVE_C=64 HANDSHAKE_C=16 KEYS="ecdsa rsa"
#   QUIET_LOAD=0.7 QUIET_WAIT=300 SLUICE_BIN=path PROXY_CPU=0 LOAD_CPU=1
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=tls-bench
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
KEEPALIVE_C=${KEEPALIVE_C:-64}
HANDSHAKE_C=${HANDSHAKE_C:-16}
KEYS=${KEYS:-"ecdsa rsa"}
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-300}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
START_TS=$(date +%s)

bench_init sluice-tls-bench
ensure_tools nginx
command -v openssl >/dev/null 2>&1 || die "missing tool: openssl"
build_sluice
write_report_lua "$TMP/report.lua"
mkdir -p "$RESULTS/raw"

# ---------------------------------------------------------------- certificates
CERTS="$TMP/certs"
mkdir -p "$CERTS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" 2>/dev/null
printf 'subjectAltName=DNS:bench.example.com\n' >"$CERTS/ext"
for key in $KEYS; do
    case $key in
        ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        rsa) newkey=(-newkey rsa:2048) ;;
        *) die "unknown key type $key (ecdsa or rsa)" ;;
    esac
    openssl req "${newkey[@]}" -nodes -subj /CN=bench.example.com \
        -keyout "$CERTS/$key.key" -out "$CERTS/$key.csr" 2>/dev/null
    openssl x509 -req -in "$CERTS/$key.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -days 2 -extfile "$CERTS/ext" -out "$CERTS/$key.crt" 2>/dev/null
done

# ---------------------------------------------------------------- upstream
UP_PORT=$(free_port)
log "upstream: sluice backend on 127.0.0.1:$UP_PORT (core $LOAD_CPU, 1 worker thread)"
TOKIO_WORKER_THREADS=1 taskset -c "$LOAD_CPU" "$SLUICE" backend \
    --listen "127.0.0.1:$UP_PORT" --name bench --version v1 >"$TMP/backend.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream did not come up"

# ---------------------------------------------------------------- proxies, one pair per key
declare -A PORT PID RSSPID MEASURED
NG_USER=""
if [[ $(id -u) == 0 ]]; then NG_USER="user root;"; fi
for key in $KEYS; do
    ng_dir="$TMP/nginx-$key"
    mkdir -p "$ng_dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    PORT[nginx,$key]=$(free_port)
    cat >"$ng_dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
$NG_USER
error_log stderr warn;
pid $ng_dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $ng_dir/client_body;
    proxy_temp_path $ng_dir/proxy;
    fastcgi_temp_path $ng_dir/fastcgi;
    uwsgi_temp_path $ng_dir/uwsgi;
    scgi_temp_path $ng_dir/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${PORT[nginx,$key]} ssl;
        server_name bench.example.com;
        ssl_certificate $CERTS/$key.crt;
        ssl_certificate_key $CERTS/$key.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" "$NGINX" -e stderr -c "$ng_dir/nginx.conf" -p "$ng_dir" >"$TMP/nginx-$key.log" 2>&1 &
    PID[nginx,$key]=$!
    PIDS+=("$!")

    sl_dir="$TMP/sluice-$key"
    mkdir -p "$sl_dir"
    PORT[sluice,$key]=$(free_port)
    admin=$(free_port)
    cat >"$sl_dir/bench.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: $UP_PORT}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${PORT[sluice,$key]}, name: https, protocol: HTTPS}
    # "*": wrk dials 127.0.0.1 and sends no usable SNI (nginx serves its default server).
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: $CERTS/$key.crt, privateKey: $CERTS/$key.key}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route:
    - destination: {host: bench, port: {number: 8080}}
EOF
    SLUICE_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SLUICE" run "$sl_dir" \
        --no-mesh --no-watch --labels istio=ingressgateway --gateway-address 127.0.0.1 \
        --admin "127.0.0.1:$admin" >"$TMP/sluice-$key.log" 2>&1 &
    PID[sluice,$key]=$!
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$admin/ready" || die "sluice ($key) not ready: $(cat "$TMP/sluice-$key.log")"
    for target in nginx sluice; do
        url="https://bench.example.com:${PORT[$target,$key]}/"
        for _ in $(seq 50); do
            if curl -sf --max-time 2 --cacert "$CERTS/ca.crt" \
                --resolve "bench.example.com:${PORT[$target,$key]}:127.0.0.1" -o /dev/null "$url"; then
                break
            fi
            sleep 0.1
        done
        smoke=$(curl -sf --max-time 2 --cacert "$CERTS/ca.crt" \
            --resolve "bench.example.com:${PORT[$target,$key]}:127.0.0.1" "$url") \
            || die "$target ($key): HTTPS request failed"
        [[ $smoke == "bench v1 - request"* ]] || die "$target ($key): unexpected answer: $smoke"
    done
    ng_workers=$(pgrep -P "${PID[nginx,$key]}" | tr '\n' ' ')
    [[ -n $ng_workers ]] || die "no nginx worker"
    MEASURED[nginx,$key]="${PID[nginx,$key]} $ng_workers"
    MEASURED[sluice,$key]="${PID[sluice,$key]}"
    # shellcheck disable=SC2206
    w=($ng_workers)
    RSSPID[nginx,$key]=${w[0]}
    RSSPID[sluice,$key]=${PID[sluice,$key]}
    PIDS+=("${w[@]}")
done

# HANDSHAKE_C parallel s_time clients for `secs`; writes a BENCH line like wrk's report.
run_stime() { # target key seconds outfile
    local target=$1 key=$2 secs=$3 out=$4 i pids=() total=0 n
    for i in $(seq "$HANDSHAKE_C"); do
        timeout $((secs + 30)) taskset -c "$LOAD_CPU" openssl s_time -new -www / -time "$secs" \
            -connect "127.0.0.1:${PORT[$target,$key]}" >"$out.$i" 2>&1 &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    for i in $(seq "$HANDSHAKE_C"); do
        n=$(awk '/connections in .* real seconds/ {print $1; exit}' "$out.$i")
        total=$((total + ${n:-0}))
        cat "$out.$i" >>"$out"
        rm -f "$out.$i"
    done
    echo "BENCH requests=$total duration_us=$((secs * 1000000)) p50_us=0 p99_us=0 err_connect=0 err_read=0 err_write=0 err_status=0 err_timeout=0" >>"$out"
}

run_load() { # target key scenario seconds outfile
    if [[ $3 == full ]]; then run_stime "$1" "$2" "$4" "$5"; else run_wrk "$@"; fi
}

run_wrk() { # target key scenario seconds outfile
    local target=$1 key=$2 scenario=$3 secs=$4 out=$5 c=$KEEPALIVE_C hdr=()
    if [[ $scenario == resumed ]]; then c=$HANDSHAKE_C; hdr=(-H 'Connection: close'); fi
    # wrk connects to 127.0.0.1 and names bench.example.com in Host; the certificate is not
    # verified by wrk (it never verifies), which costs both proxies the same.
    timeout $((secs + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$c" -d"${secs}s" \
        -s "$TMP/report.lua" -H 'Host: bench.example.com' "${hdr[@]}" \
        "https://127.0.0.1:${PORT[$target,$key]}/" >"$out" 2>&1
}

declare -A R
WARNINGS=()
measure() { # target key scenario round
    local target=$1 key=$2 scenario=$3 r=$4 k="$1,$2,$3,$4" pids raw line t0 t1 errs
    # shellcheck disable=SC2206
    pids=(${MEASURED[$target,$key]})
    log "$target $key $scenario round $r/$ROUNDS"
    reset_hwm "${RSSPID[$target,$key]}"
    rm -f "$TMP/warmup.txt"
    run_load "$target" "$key" "$scenario" "$WARMUP" "$TMP/warmup.txt" || die "warmup failed: $(cat "$TMP/warmup.txt")"
    t0=$(cpu_ticks "${pids[@]}")
    raw="$RESULTS/raw/tls-$target-$key-$scenario-r$r.txt"
    rm -f "$raw"
    run_load "$target" "$key" "$scenario" "$DURATION" "$raw" || die "load failed: $(cat "$raw")"
    t1=$(cpu_ticks "${pids[@]}")
    line=$(grep '^BENCH ' "$raw") || die "no BENCH line in $raw"
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    [[ ${m[requests]} -gt 0 ]] || die "$target $key $scenario: no requests (see $raw)"
    errs=$((m[err_connect] + m[err_read] + m[err_write] + m[err_status] + m[err_timeout]))
    # With Connection: close, wrk counts the server's close after each response as a read
    # error on some versions; only the other kinds are real failures there.
    if [[ $scenario == resumed ]]; then errs=$((errs - m[err_read])); fi
    if ((errs > 0)); then WARNINGS+=("$target $key $scenario round $r: $errs errors ($line)"); fi
    R[$k,rps]=$(awk -v n="${m[requests]}" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", n/(d/1e6)}')
    R[$k,cpu]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${m[requests]}" 'BEGIN{printf "%.3f", t/hz/n*10000}')
    R[$k,per_cpu_s]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${m[requests]}" 'BEGIN{ if (t == 0) print 0; else printf "%.0f", n/(t/hz)}')
    R[$k,p99]=$(awk -v v="${m[p99_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$k,rss]=$(awk -v k="$(hwm_kb "${RSSPID[$target,$key]}")" 'BEGIN{printf "%.1f", k/1024}')
    log "  ${R[$k,rps]} req/s, CPU ${R[$k,cpu]} s/10k, ${R[$k,per_cpu_s]} req per CPU-s, p99 ${R[$k,p99]} ms, RSS ${R[$k,rss]} MiB"
}

DISTURBED=""
if ! wait_quiet "$QUIET_LOAD" "$QUIET_WAIT"; then
    read -r load _ </proc/loadavg
    DISTURBED="1-min load average was still $load (≥ $QUIET_LOAD) after waiting ${QUIET_WAIT}s"
fi
for key in $KEYS; do
    for scenario in keepalive full resumed; do
        for r in $(seq "$ROUNDS"); do
            if ((r % 2)); then order=(nginx sluice); else order=(sluice nginx); fi
            for target in "${order[@]}"; do measure "$target" "$key" "$scenario" "$r"; done
            R[ratio,$key,$scenario,$r,cpu]=$(ratio "${R[sluice,$key,$scenario,$r,cpu]}" "${R[nginx,$key,$scenario,$r,cpu]}")
            R[ratio,$key,$scenario,$r,per_cpu_s]=$(ratio "${R[sluice,$key,$scenario,$r,per_cpu_s]}" "${R[nginx,$key,$scenario,$r,per_cpu_s]}")
        done
    done
done

mval() { # key-prefix field -> median over rounds
    local vals=() r
    for r in $(seq "$ROUNDS"); do vals+=("${R[$1,$r,$2]}"); done
    median "${vals[@]}"
}
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{ ok = (op == ">=") ? v >= l : v <= l; print ok ? "met" : "NOT met" }'; }

{
    echo "# sluice vs nginx terminating TLS"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_desc)"
    echo "- sluice: $(sluice_version)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(openssl version)"
    echo "- method: proxies on core $PROXY_CPU with 1 worker each, wrk (-t1) and the plain-text upstream on core $LOAD_CPU;" \
        "keepalive: wrk, c=$KEEPALIVE_C HTTPS keep-alive connections; full: $HANDSHAKE_C \`openssl s_time -new\` clients (a new connection and full TLS 1.3 handshake per request); resumed: wrk, c=$HANDSHAKE_C, \`Connection: close\` (wrk resumes its session);" \
        "${WARMUP}s warmup + ${DURATION}s per row, $ROUNDS rounds in alternating order; medians over rounds"
    if [[ -n $DISTURBED ]]; then echo "- **DISTURBED**: $DISTURBED"; fi
    echo
    echo "| key | scenario | target | req/s | CPU s/10k req | req per CPU-s | p99 ms | peak RSS MiB |"
    echo "|---|---|---|---:|---:|---:|---:|---:|"
    for key in $KEYS; do
        for scenario in keepalive full resumed; do
            for target in nginx sluice; do
                p="$target,$key,$scenario"
                echo "| $key | $scenario | $target | $(mval "$p" rps) | $(mval "$p" cpu) | $(mval "$p" per_cpu_s) | $(mval "$p" p99) | $(mval "$p" rss) |"
            done
        done
    done
    echo
    for key in $KEYS; do
        kc=$(mval "ratio,$key,keepalive" cpu)
        hs=$(mval "ratio,$key,full" per_cpu_s)
        rs=$(mval "ratio,$key,resumed" per_cpu_s)
        echo "- $key keep-alive: sluice/nginx CPU per request = **$kc** (target ≤ 1.10: $(verdict "$kc" '<=' 1.10))"
        echo "- $key full handshakes: sluice/nginx handshakes per CPU-second = **$hs** (target ≥ 0.90: $(verdict "$hs" '>=' 0.90))"
        echo "- $key resumed handshakes: sluice/nginx per CPU-second = $rs (no target)"
    done
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} >"$TMP/report.md"
cp "$TMP/report.md" "$RESULTS/tls-latest.md"
cat "$TMP/report.md"
log "done in $(( $(date +%s) - START_TS ))s; written to bench/results/tls-latest.md"

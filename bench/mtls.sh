#!/usr/bin/env bash
# Sidecar to sidecar: what mesh mTLS costs a pair of sluice proxies, and how that pair compares
# with a pair of nginx proxies speaking mTLS to each other (HTTP/1.1 keep-alive).
#
# Usage: bash bench/mtls.sh
#
# Targets (wrk -> client proxy -> server proxy -> upstream; both proxies of a pair on one core):
#   sluice-plain  client `sluice run` (ServiceEntry MESH_INTERNAL, endpoint without the
#                 security.istio.io/tlsMode label) -> server `sluice run` (Sidecar ingress,
#                 PeerAuthentication PERMISSIVE): plain text between the sidecars
#   sluice-mtls   the same, with the endpoint labelled tlsMode: istio (auto mTLS) and the
#                 server's PeerAuthentication STRICT; certificates from one `sluice ca init`
#   nginx-mtls    nginx A (proxy_pass https:// with a client certificate, verifying the
#                 server) -> nginx B (ssl_verify_client on)
#   nginx-plain   the same nginx pair over plain HTTP (reference; NGINX_PLAIN=0 drops it)
#
# Verdict: CPU per request sluice-mtls / nginx-mtls <= 1.10. Also reported: the cost of mTLS,
# sluice-mtls / sluice-plain (and nginx-mtls / nginx-plain).
#
# Environment knobs (all optional):
#   DURATION=10 WARMUP=2 CONCURRENCY="16 64" ROUNDS=3 NGINX_PLAIN=1
#   QUIET_LOAD=0.7 QUIET_WAIT=300 SLUICE_BIN=path PROXY_CPU=0 LOAD_CPU=1
#
# See bench/README.md ("Mesh mTLS") for what is measured and how to read the result.
set -euo pipefail

LOG_TAG="mtls-bench"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-"16 64"}
ROUNDS=${ROUNDS:-3}
NGINX_PLAIN=${NGINX_PLAIN:-1}
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-300}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
START_TS=$(date +%s)
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

# The service as the client sidecar knows it; wrk sends it as Host to every target.
NS=bench
SERVICE_HOST="bench.$NS.svc.cluster.local"
TD=cluster.local

bench_init sluice-mtls-bench
ensure_tools nginx
for tool in openssl ss; do command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"; done
build_sluice
write_report_lua "$TMP/report.lua"
mkdir -p "$RESULTS/raw"

TARGETS=(sluice-plain sluice-mtls nginx-mtls)
if [[ $NGINX_PLAIN == 1 ]]; then TARGETS+=(nginx-plain); fi
declare -A TITLE=(
    [sluice-plain]="sluice plaintext"
    [sluice-mtls]="sluice mTLS"
    [nginx-mtls]="nginx mTLS"
    [nginx-plain]="nginx plaintext"
)

# Waits until something accepts TCP connections on 127.0.0.1:port.
wait_listen() { # port
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- certificates
# sluice: one mesh CA; each sidecar issues its own workload certificate from it.
"$SLUICE" ca init "$TMP/ca" --trust-domain "$TD" >"$TMP/ca-init.log" 2>&1 \
    || die "sluice ca init failed: $(cat "$TMP/ca-init.log")"
# nginx: the same key type (ECDSA P-256) and the same SPIFFE identities, from openssl.
CERTS="$TMP/certs"
mkdir -p "$CERTS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/O=$TD/CN=bench-ca" -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" 2>/dev/null
for sa in client server; do
    printf 'subjectAltName=DNS:%s.%s.svc,URI:spiffe://%s/ns/%s/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$sa" "$NS" "$TD" "$NS" "$sa" >"$CERTS/$sa.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=$TD/CN=$sa" \
        -keyout "$CERTS/$sa.key" -out "$CERTS/$sa.csr" 2>/dev/null
    openssl x509 -req -in "$CERTS/$sa.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -days 2 -extfile "$CERTS/$sa.ext" -out "$CERTS/$sa.crt" 2>/dev/null \
        || die "openssl could not sign the $sa certificate"
done

# ---------------------------------------------------------------- upstream
UP_PORT=$(free_port)
log "upstream: sluice backend on 127.0.0.1:$UP_PORT (core $LOAD_CPU, 1 worker thread)"
TOKIO_WORKER_THREADS=1 taskset -c "$LOAD_CPU" "$SLUICE" backend \
    --listen "127.0.0.1:$UP_PORT" --name bench --version v1 >"$TMP/backend.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream did not come up: $(cat "$TMP/backend.log")"

# Per target: the port wrk talks to, the pids whose CPU is counted (client side, server side)
# and the pid whose VmHWM is reported for each side.
declare -A PORT CLIENT_PIDS SERVER_PIDS CLIENT_RSS SERVER_RSS MASTERS

# ---------------------------------------------------------------- sluice pairs
start_sluice() { # name config-dir service-account; sets STARTED_PID
    local name=$1 dir=$2 sa=$3 admin
    admin=$(free_port)
    SLUICE_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SLUICE" run "$dir" \
        --no-gateway --no-watch --admin "127.0.0.1:$admin" --mesh-address 127.0.0.1 \
        --ca "$TMP/ca" --trust-domain "$TD" --namespace "$NS" --service-account "$sa" \
        >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$admin/ready" || die "$name not ready: $(cat "$TMP/$name.log")"
}

# Both sidecars get workload certificates in either mode, so the two pairs differ only in
# the endpoint's tlsMode label and the server's PeerAuthentication mode.
start_sluice_pair() { # target mtls(0|1)
    local target=$1 mtls=$2 inbound service mode=PERMISSIVE labels=""
    inbound=$(free_port)
    service=$(free_port)
    if ((mtls)); then
        mode=STRICT
        labels="
    labels:
      security.istio.io/tlsMode: istio"
    fi
    mkdir -p "$TMP/$target-server" "$TMP/$target-client"
    cat >"$TMP/$target-server/server.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: server, namespace: $NS}
spec:
  ingress:
  - port: {number: $inbound, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:$UP_PORT
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: $NS}
spec:
  mtls: {mode: $mode}
EOF
    cat >"$TMP/$target-client/client.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench, namespace: $NS}
spec:
  hosts: [$SERVICE_HOST]
  location: MESH_INTERNAL
  ports: [{number: $service, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {http: $inbound}
    serviceAccount: server$labels
EOF
    start_sluice "$target-server" "$TMP/$target-server" server
    SERVER_PIDS[$target]=$STARTED_PID
    SERVER_RSS[$target]=$STARTED_PID
    start_sluice "$target-client" "$TMP/$target-client" client
    CLIENT_PIDS[$target]=$STARTED_PID
    CLIENT_RSS[$target]=$STARTED_PID
    PORT[$target]=$service
    PORT[$target,inbound]=$inbound
    wait_listen "$inbound" || die "$target: server sidecar does not listen on $inbound: $(cat "$TMP/$target-server.log")"
    wait_listen "$service" || die "$target: client sidecar does not listen on $service: $(cat "$TMP/$target-client.log")"
    log "$target: client sidecar 127.0.0.1:$service -> server sidecar 127.0.0.1:$inbound ($mode) -> upstream (core $PROXY_CPU)"
}

# ---------------------------------------------------------------- nginx pairs
NG_USER=""
if [[ $(id -u) == 0 ]]; then NG_USER="user root;"; fi

# Writes nginx.conf into the dir with the http-level body given.
nginx_conf() { # dir body
    local dir=$1
    mkdir -p "$dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
$NG_USER
error_log stderr warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$2
}
EOF
}

start_nginx() { # name port; sets STARTED_PID and STARTED_WORKER
    local name=$1 port=$2 dir="$TMP/$1" workers
    "$NGINX" -t -e stderr -c "$dir/nginx.conf" -p "$dir" >"$TMP/$name-t.log" 2>&1 \
        || die "$name: nginx config test failed: $(cat "$TMP/$name-t.log")"
    taskset -c "$PROXY_CPU" "$NGINX" -e stderr -c "$dir/nginx.conf" -p "$dir" >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_listen "$port" || die "$name did not come up: $(cat "$TMP/$name.log")"
    workers=""
    for _ in $(seq 50); do
        workers=$(pgrep -P "$STARTED_PID" | tr '\n' ' ') || true
        if [[ -n $workers ]]; then break; fi
        sleep 0.1
    done
    [[ -n $workers ]] || die "$name: no nginx worker process found"
    # shellcheck disable=SC2206
    workers=($workers)
    STARTED_WORKER=${workers[0]}
    PIDS+=("${workers[@]}")
}

# nginx's default keepalive_requests (1000) would close connections periodically, which the
# sidecars never do: raised on every hop, as in run.sh.
start_nginx_pair() { # target mtls(0|1)
    local target=$1 mtls=$2 a_port b_port scheme=http client_tls="" listen_tls="" verify_hdr=""
    a_port=$(free_port)
    b_port=$(free_port)
    if ((mtls)); then
        scheme=https
        client_tls="
            proxy_ssl_certificate $CERTS/client.crt;
            proxy_ssl_certificate_key $CERTS/client.key;
            proxy_ssl_trusted_certificate $CERTS/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name server.$NS.svc;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_session_reuse on;"
        listen_tls=" ssl;
        ssl_certificate $CERTS/server.crt;
        ssl_certificate_key $CERTS/server.key;
        ssl_client_certificate $CERTS/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3"
        # The counterpart of the x-forwarded-client-cert header the sluice server adds, and
        # the smoke test's proof that nginx B verified a client certificate.
        # shellcheck disable=SC2016  # an nginx variable, expanded by nginx
        verify_hdr='proxy_set_header X-Client-Verify $ssl_client_verify;'
    fi
    nginx_conf "$TMP/$target-b" "
    upstream app {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$b_port$listen_tls;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            $verify_hdr
        }
    }"
    nginx_conf "$TMP/$target-a" "
    upstream peer {
        server 127.0.0.1:$b_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$a_port;
        keepalive_requests 1000000;
        location / {
            proxy_pass $scheme://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";$client_tls
        }
    }"
    start_nginx "$target-b" "$b_port"
    SERVER_PIDS[$target]="$STARTED_PID $STARTED_WORKER"
    SERVER_RSS[$target]=$STARTED_WORKER
    MASTERS[$target]=$STARTED_PID
    start_nginx "$target-a" "$a_port"
    CLIENT_PIDS[$target]="$STARTED_PID $STARTED_WORKER"
    CLIENT_RSS[$target]=$STARTED_WORKER
    MASTERS[$target]="$STARTED_PID ${MASTERS[$target]}"
    PORT[$target]=$a_port
    PORT[$target,inbound]=$b_port
    log "$target: nginx A 127.0.0.1:$a_port -> nginx B 127.0.0.1:$b_port ($scheme) -> upstream (core $PROXY_CPU)"
}

start_sluice_pair sluice-plain 0
start_sluice_pair sluice-mtls 1
start_nginx_pair nginx-mtls 1
if [[ $NGINX_PLAIN == 1 ]]; then start_nginx_pair nginx-plain 0; fi

# ---------------------------------------------------------------- smoke checks
# GET path through a target's client proxy, retried while the pair settles (certificates).
through() { # target path
    local url="http://127.0.0.1:${PORT[$1]}$2" out
    for _ in $(seq 50); do
        if out=$(curl -sf --max-time 2 -H "Host: $SERVICE_HOST" "$url"); then
            echo "$out"
            return 0
        fi
        sleep 0.1
    done
    return 1
}
for target in "${TARGETS[@]}"; do
    answer=$(through "$target" /) || die "$target: request through the pair failed"
    [[ $answer == "bench v1 - request"* ]] || die "$target: unexpected answer: $answer"
    headers=$(through "$target" /headers) || die "$target: GET /headers through the pair failed"
    echo "$headers" >"$RESULTS/raw/mtls-headers-$target.json"
    case $target in
    sluice-mtls)
        if ! grep -qi '"x-forwarded-client-cert"' <<<"$headers" \
            || ! grep -q "URI=spiffe://$TD/ns/$NS/sa/client" <<<"$headers"; then
            die "$target: no x-forwarded-client-cert with the client's identity at the upstream: $headers"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $SERVICE_HOST" \
            "http://127.0.0.1:${PORT[$target,inbound]}/" || true)
        [[ $code != 2* ]] || die "$target: the STRICT server sidecar answered a plaintext request ($code)"
        ;;
    sluice-plain)
        if grep -qi 'x-forwarded-client-cert' <<<"$headers"; then
            die "$target: x-forwarded-client-cert at the upstream, so the sidecars spoke mTLS: $headers"
        fi
        ;;
    nginx-mtls)
        grep -qiE '"x-client-verify": *"SUCCESS"' <<<"$headers" \
            || die "$target: nginx B did not verify a client certificate: $headers"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CERTS/ca.crt" \
            --resolve "server.$NS.svc:${PORT[$target,inbound]}:127.0.0.1" \
            "https://server.$NS.svc:${PORT[$target,inbound]}/" || true)
        [[ $code != 2* ]] || die "$target: nginx B answered a client without a certificate ($code)"
        ;;
    nginx-plain)
        if grep -qi 'x-client-verify' <<<"$headers"; then die "$target: unexpected TLS at nginx B: $headers"; fi
        ;;
    esac
    log "$target: smoke check passed"
done

# ---------------------------------------------------------------- measure
declare -A R
WARNINGS=()

run_wrk() { # target concurrency seconds outfile
    timeout $(($3 + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$2" -d"${3}s" --latency \
        -s "$TMP/report.lua" -H "Host: $SERVICE_HOST" "http://127.0.0.1:${PORT[$1]}/" >"$4" 2>&1
}

# Per-request CPU seconds per 10,000 requests from a tick count.
per_10k() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN{printf "%.3f", t/hz/n*10000}'; }
mib() { awk -v k="$(hwm_kb "$1")" 'BEGIN{printf "%.1f", k/1024}'; }

measure_row() { # target concurrency round
    local target=$1 c=$2 r=$3 k=$1,$2,$3
    local cpids spids sampler raw line k0 s0 k1 s1 c0 c1 v0 v1 errs own other steal
    # shellcheck disable=SC2206
    cpids=(${CLIENT_PIDS[$target]})
    # shellcheck disable=SC2206
    spids=(${SERVER_PIDS[$target]})
    log "$target c=$c round $r/$ROUNDS: warmup ${WARMUP}s, measure ${DURATION}s"
    reset_hwm "${CLIENT_RSS[$target]}" "${SERVER_RSS[$target]}"
    run_wrk "$target" "$c" "$WARMUP" "$TMP/warmup.txt" || die "wrk warmup failed: $(cat "$TMP/warmup.txt")"
    read -r k0 s0 < <(core_ticks "$PROXY_CPU")
    c0=$(cpu_ticks "${cpids[@]}")
    v0=$(cpu_ticks "${spids[@]}")
    raw="$RESULTS/raw/mtls-$target-c$c-r$r.txt"
    # Connections from the client proxy to the server proxy tell whether that hop multiplexes
    # or holds one connection per request in flight. Counted halfway through the run, on the
    # load core: at its end wrk drops connections with requests in flight, and nginx closes
    # the upstream connections of those.
    # shellcheck disable=SC2016  # expanded by the inner shell
    taskset -c "$LOAD_CPU" bash -c 'sleep "$1"; ss -Htn state established "( dport = :$2 )" | wc -l' \
        - "$(awk -v d="$DURATION" 'BEGIN{print d/2}')" "${PORT[$target,inbound]}" >"$TMP/conns" &
    sampler=$!
    run_wrk "$target" "$c" "$DURATION" "$raw" || die "wrk failed: $(cat "$raw")"
    wait "$sampler" || true
    c1=$(cpu_ticks "${cpids[@]}")
    v1=$(cpu_ticks "${spids[@]}")
    read -r k1 s1 < <(core_ticks "$PROXY_CPU")
    R[$k,conns]=$(<"$TMP/conns")
    line=$(grep '^BENCH ' "$raw") || die "no BENCH line in $raw"
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    [[ ${m[requests]} -gt 0 ]] || die "$target c=$c: no requests completed (see $raw)"
    errs=$((m[err_connect] + m[err_read] + m[err_write] + m[err_status] + m[err_timeout]))
    if ((errs > 0)); then
        WARNINGS+=("$target c=$c round $r: $errs errors (connect ${m[err_connect]}, read ${m[err_read]}, write ${m[err_write]}, non-2xx/3xx ${m[err_status]}, timeout ${m[err_timeout]})")
    fi
    own=$((c1 - c0 + v1 - v0))
    R[$k,rps]=$(awk -v n="${m[requests]}" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", n/(d/1e6)}')
    R[$k,p50]=$(awk -v v="${m[p50_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$k,p99]=$(awk -v v="${m[p99_us]}" 'BEGIN{printf "%.3f", v/1000}')
    R[$k,cpu]=$(per_10k "$own" "${m[requests]}")
    R[$k,cpu_client]=$(per_10k $((c1 - c0)) "${m[requests]}")
    R[$k,cpu_server]=$(per_10k $((v1 - v0)) "${m[requests]}")
    R[$k,busy]=$(awk -v t="$own" -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$k,rss_client]=$(mib "${CLIENT_RSS[$target]}")
    R[$k,rss_server]=$(mib "${SERVER_RSS[$target]}")
    R[$k,errs]=$errs
    # Anything else that ran on the proxies' core (other processes, the idle pairs) and steal.
    other=$(awk -v t=$((k1 - k0 - own)) -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{v = 100*t/hz/(d/1e6); printf "%.0f", v < 0 ? 0 : v}')
    steal=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v d="${m[duration_us]}" 'BEGIN{printf "%.0f", 100*t/hz/(d/1e6)}')
    R[$k,other]=$other
    R[$k,steal]=$steal
    if ((other > 10 || steal > 5)); then
        WARNINGS+=("$target c=$c round $r: core $PROXY_CPU was busy with other work ${other}% of the time (steal ${steal}%): the row is disturbed, run again on a quiet machine")
    fi
    log "  ${R[$k,rps]} req/s, p99 ${R[$k,p99]} ms, pair CPU ${R[$k,cpu]} s/10k (client ${R[$k,cpu_client]}, server ${R[$k,cpu_server]}), core ${R[$k,busy]}%, RSS ${R[$k,rss_client]}/${R[$k,rss_server]} MiB, ${R[$k,conns]} proxy-to-proxy connections; other ${other}%, steal ${steal}%"
}

max_over_rounds() { # target concurrency field
    local r v=0
    for r in $(seq "$ROUNDS"); do
        v=$(awk -v a="$v" -v b="${R[$1,$2,$r,$3]}" 'BEGIN{print (b > a) ? b : a}')
    done
    echo "$v"
}

# Ratios of one round: name numerator-target denominator-target field.
RATIOS=("mtls_cost sluice-mtls sluice-plain cpu" "vs_nginx sluice-mtls nginx-mtls cpu" "vs_nginx_rps sluice-mtls nginx-mtls rps")
if [[ $NGINX_PLAIN == 1 ]]; then RATIOS+=("nginx_cost nginx-mtls nginx-plain cpu"); fi

DISTURBED=""
if ! wait_quiet "$QUIET_LOAD" "$QUIET_WAIT"; then
    read -r load _ </proc/loadavg
    DISTURBED="1-min load average was still $load (≥ $QUIET_LOAD) after waiting ${QUIET_WAIT}s"
fi

for c in $CONCURRENCY; do
    for r in $(seq "$ROUNDS"); do
        # The order reverses every round, so slow drift of the machine favours no target.
        order=("${TARGETS[@]}")
        if ((r % 2 == 0)); then
            order=()
            for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do order+=("${TARGETS[i]}"); done
        fi
        for target in "${order[@]}"; do measure_row "$target" "$c" "$r"; done
        for spec in "${RATIOS[@]}"; do
            read -r name num den field <<<"$spec"
            R[$name,$c,$r,v]=$(ratio "${R[$num,$c,$r,$field]}" "${R[$den,$c,$r,$field]}")
        done
    done
    for target in "${TARGETS[@]}"; do
        # An even number of rounds gives medians between two figures: keep each field's precision.
        for f in rps busy; do R[$target,$c,$f]=$(med "$target,$c" "$f" %.0f); done
        for f in p50 p99 cpu cpu_client cpu_server; do R[$target,$c,$f]=$(med "$target,$c" "$f" %.3f); done
        for f in rss_client rss_server conns other steal; do R[$target,$c,$f]=$(max_over_rounds "$target" "$c" "$f"); done
        errs=0
        for r in $(seq "$ROUNDS"); do errs=$((errs + R[$target,$c,$r,errs])); done
        R[$target,$c,errs]=$errs
    done
    for spec in "${RATIOS[@]}"; do
        read -r name _ <<<"$spec"
        R[$name,$c]=$(med "$name,$c" v %.2f)
    done
done

# ---------------------------------------------------------------- report
masters_rss=()
for target in nginx-mtls nginx-plain; do
    [[ -n ${MASTERS[$target]:-} ]] || continue
    for pid in ${MASTERS[$target]}; do masters_rss+=("$(mib "$pid")"); done
done
per_round() { # ratio-name concurrency
    local r out=()
    for r in $(seq "$ROUNDS"); do out+=("${R[$1,$2,$r,v]}"); done
    echo "${out[*]}"
}

{
    echo "# sluice vs nginx: sidecar-to-sidecar mTLS"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(machine_desc)"
    echo "- sluice: $(sluice_version)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(openssl version); wrk: $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "- method: wrk → client proxy → server proxy → upstream; both proxies of a pair on core $PROXY_CPU with 1 worker each" \
        "(sluice \`TOKIO_WORKER_THREADS=1\`, nginx \`worker_processes 1\`), wrk (-t1) and the upstream (\`sluice backend\`, 1 tokio worker) on core $LOAD_CPU;" \
        "HTTP/1.1 keep-alive, GET /, \`Host: $SERVICE_HOST\`; ECDSA P-256 certificates on both pairs (sluice: \`sluice ca init\`; nginx: openssl);" \
        "${WARMUP}s warmup + ${DURATION}s per row; $ROUNDS round(s) per concurrency, the order reversed every round; medians over the rounds (peak RSS: maximum)"
    if [[ -n $DISTURBED ]]; then echo "- **DISTURBED**: $DISTURBED"; fi
    echo
    echo "| target | concurrency | req/s | p50 ms | p99 ms | pair CPU s/10k req | client CPU | server CPU | peak RSS client MiB | peak RSS server MiB | proxy-to-proxy conns | proxy core busy % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for c in $CONCURRENCY; do
        for target in "${TARGETS[@]}"; do
            name=${TITLE[$target]}
            if [[ ${R[$target,$c,errs]} -gt 0 ]]; then name="$name (errors!)"; fi
            echo "| $name | $c | ${R[$target,$c,rps]} | ${R[$target,$c,p50]} | ${R[$target,$c,p99]} | ${R[$target,$c,cpu]} | ${R[$target,$c,cpu_client]} | ${R[$target,$c,cpu_server]} | ${R[$target,$c,rss_client]} | ${R[$target,$c,rss_server]} | ${R[$target,$c,conns]} | ${R[$target,$c,busy]} |"
        done
    done
    echo
    for c in $CONCURRENCY; do
        v=${R[vs_nginx,$c]}
        echo "- c=$c: sluice mTLS / nginx mTLS CPU per request = **$v** (target ≤ 1.10: $(at_most "$v" 1.10)); per round: $(per_round vs_nginx "$c")"
        echo "- c=$c: cost of mTLS, sluice mTLS / sluice plaintext CPU per request = **${R[mtls_cost,$c]}**; per round: $(per_round mtls_cost "$c")"
        if [[ $NGINX_PLAIN == 1 ]]; then
            echo "- c=$c: for reference, nginx mTLS / nginx plaintext CPU per request = ${R[nginx_cost,$c]}; per round: $(per_round nginx_cost "$c")"
        fi
        echo "- c=$c: sluice mTLS / nginx mTLS throughput = ${R[vs_nginx_rps,$c]} (no target); per round: $(per_round vs_nginx_rps "$c")"
    done
    echo
    echo "The verdicts use the median over the rounds of each round's ratio: the targets of one round ran within a minute of each other."
    echo
    echo "Notes:"
    echo "- pair CPU s/10k req: utime+stime of both proxies of the pair (nginx: master + worker of each) over the measured run, per 10,000 completed requests; client / server CPU: the same for each side alone."
    echo "- peak RSS: VmHWM, reset (clear_refs) before each row's warmup; nginx: the workers (masters: $(IFS=/; echo "${masters_rss[*]:-n/a}") MiB)."
    echo "- proxy-to-proxy conns: established TCP connections from the client proxy to the server proxy halfway through the measured run (the maximum over the rounds)."
    echo "- proxy core busy %: the pair's CPU time over the run's wall time; near 100 means core $PROXY_CPU was the bottleneck."
    echo "- sluice: both pairs have workload certificates; plaintext differs only in the endpoint's missing \`security.istio.io/tlsMode: istio\` label and PeerAuthentication PERMISSIVE instead of STRICT."
    echo "- nginx B adds \`X-Client-Verify\` (the counterpart of sluice's \`x-forwarded-client-cert\`); sluice also adds its usual forwarding headers on both hops."
    disturb=()
    for c in $CONCURRENCY; do
        for target in "${TARGETS[@]}"; do
            disturb+=("$target c=$c ${R[$target,$c,other]}%/${R[$target,$c,steal]}%")
        done
    done
    echo "- other work / steal on core $PROXY_CPU during each row, the maximum over the rounds (should be ~0): $(IFS=,; joined="${disturb[*]}"; echo "${joined//,/, }")."
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} >"$TMP/report.md"

cp "$TMP/report.md" "$RESULTS/mtls-latest.md"
cat "$TMP/report.md"
log "done in $(( $(date +%s) - START_TS ))s; written to bench/results/mtls-latest.md (raw wrk output in bench/results/raw/mtls-*)"

#!/usr/bin/env bash
# Starts the long-running processes of one example (its backends and `sluice run`) in the
# background, prints their PIDs and ports, waits until they all answer, and stops them all on
# Ctrl-C. Run it in a terminal of its own; the README's other commands are one-shot.
#
#   examples/run.sh NAME [more `sluice run` arguments]
#
# Needs `sluice` on PATH (`cargo install --path crates/sluice`) and curl. Every example uses the
# same ports, so only one runs at a time: the script refuses to start while one of its ports is
# taken (stop the previous example with Ctrl-C in its terminal).
set -u

EXAMPLES="canary header-canary path-canary source-labels subdomain-gateway tcp-traffic-shifting https-gateway mutual-tls"
ADMIN=127.0.0.1:15000

usage() {
  echo "usage: examples/run.sh NAME [sluice run arguments]" >&2
  echo "NAME: ${EXAMPLES// /, }" >&2
  exit 2
}

[ $# -ge 1 ] || usage
name=$1
shift
# The README's paths are relative to the repository root, wherever the script is called from.
cd "$(dirname "$0")/.." || exit 1
if ! command -v sluice >/dev/null 2>&1; then
  echo "sluice is not on PATH: run \`cargo install --path crates/sluice\` first" >&2
  exit 1
fi

# What the example needs: its backends (`listen name version [extra]`), the proxy's config
# path and flags, and the ports the proxy listens on.
backends=()
run_args=()
proxy_ports=()
# More proxies (`sluice run` arguments, admin included), started before the main one.
more_proxies=()
backend() { backends+=("$*"); }
proxy() { more_proxies+=("$*"); }
more_ports=()

case $name in
  canary)
    backend 127.0.0.1:9001 app-backend v1
    backend 127.0.0.1:9002 app-backend v2
    # A copy, so the README's steps edit /tmp/canary and not the repository.
    mkdir -p /tmp/canary && cp examples/canary/config/*.yaml /tmp/canary/ || exit 1
    run_args=(/tmp/canary)
    proxy_ports=(9080)
    ;;
  header-canary | path-canary | source-labels)
    backend 127.0.0.1:9001 app-backend v1
    backend 127.0.0.1:9002 app-backend v2
    run_args=("examples/$name")
    proxy_ports=(9080)
    ;;
  subdomain-gateway)
    backend 127.0.0.1:9001 frontend v1
    backend 127.0.0.1:9002 frontend v2
    backend 127.0.0.1:9003 api v1
    run_args=(examples/subdomain-gateway --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh)
    proxy_ports=(8080)
    ;;
  tcp-traffic-shifting)
    backend 127.0.0.1:9001 tcp-echo v1 --tcp-echo one
    backend 127.0.0.1:9002 tcp-echo v2 --tcp-echo two
    mkdir -p /tmp/tcp-echo && cp examples/tcp-traffic-shifting/config/*.yaml /tmp/tcp-echo/ || exit 1
    run_args=(/tmp/tcp-echo --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh)
    proxy_ports=(31400)
    ;;
  https-gateway)
    backend 127.0.0.1:9001 httpbin v1
    backend 127.0.0.1:9002 helloworld v1
    if [ ! -f examples/https-gateway/certs/example.com.crt ]; then
      bash examples/https-gateway/make-certs.sh >/dev/null 2>&1 || {
        echo "examples/https-gateway/make-certs.sh failed (it needs openssl)" >&2
        exit 1
      }
    fi
    run_args=(examples/https-gateway --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh)
    proxy_ports=(8443 8080)
    ;;
  mutual-tls)
    backend 127.0.0.1:9001 httpbin v1
    # One CA for both workloads (made anew, as `sluice ca init --force` does).
    sluice ca init examples/mutual-tls/ca --force >/dev/null || exit 1
    # httpbin's sidecar: its inbound port 8000 in front of the app, admin on 15001.
    proxy examples/mutual-tls/httpbin --ca examples/mutual-tls/ca --namespace foo \
      --service-account httpbin --labels app=httpbin --no-gateway --gateway-address 127.0.0.1 \
      --admin 127.0.0.1:15001
    more_ports=(8000 15001)
    # sleep's sidecar: httpbin.foo on 9080, with mutual TLS to httpbin's inbound port.
    run_args=(examples/mutual-tls/sleep --ca examples/mutual-tls/ca --namespace foo
      --service-account sleep --labels app=sleep --no-gateway)
    proxy_ports=(9080)
    ;;
  *) usage ;;
esac
run_args+=(--admin "$ADMIN" "$@")

# True when something accepts connections on 127.0.0.1:PORT (bash's /dev/tcp, no request sent,
# so the backends' request counters stay at 0).
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ports=()
for b in "${backends[@]}"; do
  set -- $b
  ports+=("${1##*:}")
done
ports+=("${more_ports[@]}" "${proxy_ports[@]}" "${ADMIN##*:}")
for port in "${ports[@]}"; do
  if answers "$port"; then
    echo "127.0.0.1:$port is already in use: is another example still running? Stop it (Ctrl-C in its terminal) first." >&2
    exit 1
  fi
done

pids=()
stopped=
stop() {
  [ -n "$stopped" ] && return
  stopped=1
  [ ${#pids[@]} -gt 0 ] || return
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  echo "stopped ${pids[*]}"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts one process in the background (in a script, background jobs ignore Ctrl-C: the trap
# above stops them).
start() {
  "$@" &
  pids+=($!)
  echo "pid $!  $*"
}

for b in "${backends[@]}"; do
  set -- $b
  start sluice backend --listen "$1" --name "$2" --version "$3" "${@:4}"
done
for p in "${more_proxies[@]}"; do
  set -- $p
  start sluice run "$@"
done
start sluice run "${run_args[@]}"

# Exits (stopping the others) as soon as one of the processes has ended, e.g. a port in use.
check_alive() {
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      echo "pid $pid exited with status $?: stopping the others" >&2
      exit 1
    fi
  done
}

ready() {
  for port in "${ports[@]}"; do
    answers "$port" || return 1
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/ready")" = 200 ]
}

for _ in $(seq 1 300); do
  check_alive
  ready && break
  sleep 0.1
done
if ! ready; then
  echo "not ready after 30 s: $(curl -s "http://$ADMIN/ready")" >&2
  exit 1
fi
backend_addrs=""
for b in "${backends[@]}"; do
  set -- $b
  backend_addrs+=" $1"
done
proxy_addrs=""
for port in "${proxy_ports[@]}"; do proxy_addrs+=" 127.0.0.1:$port"; done
echo "ready: backends on$backend_addrs, proxy on$proxy_addrs, admin on http://$ADMIN. Ctrl-C stops them all."

while :; do
  check_alive
  # `wait` on a background sleep returns at once when a signal arrives, so Ctrl-C acts at once.
  sleep 1 &
  wait $!
done

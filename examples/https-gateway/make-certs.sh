#!/usr/bin/env bash
# The task's certificates, made with openssl in certs/ next to this script: a root
# (example.com) and one server certificate per host, each naming its host as a SAN.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p certs
openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 \
  -subj '/O=example Inc./CN=example.com' \
  -keyout certs/example.com.key -out certs/example.com.crt 2>/dev/null
serial=0
for host in httpbin.example.com helloworld.example.com; do
  serial=$((serial + 1))
  openssl req -out "certs/$host.csr" -newkey rsa:2048 -nodes -keyout "certs/$host.key" \
    -subj "/CN=$host/O=$host organization" 2>/dev/null
  openssl x509 -req -sha256 -days 365 -CA certs/example.com.crt -CAkey certs/example.com.key \
    -set_serial "$serial" -in "certs/$host.csr" -out "certs/$host.crt" \
    -extfile <(printf 'subjectAltName=DNS:%s\n' "$host") 2>/dev/null
done
echo "certificates written to $(pwd)/certs"

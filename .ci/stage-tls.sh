#!/usr/bin/env bash
# Installs what the TLS tests (crates/test-support/tests/tls.rs) need: Debian's openssl, the
# independent `s_client` that checks SNI, ALPN, versions and client-certificate refusal, and
# the generator of the tests' RSA keys.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if command -v openssl >/dev/null 2>&1; then
    echo "stage-tls: openssl already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "stage-tls: need root to install openssl" >&2
    exit 1
fi
echo "stage-tls: installing openssl"
apt-get update -qq
apt-get install -y -qq --no-install-recommends openssl

#!/usr/bin/env bash
# Installs what the examples' READMEs call and crates/sluice/tests/example_readmes runs as
# written: curl, and Debian's `nc` (netcat-openbsd, for `nc -N`) for the TCP example. openssl
# comes from stage-tls.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
if [ ${#missing[@]} -eq 0 ]; then
    echo "stage-examples: curl and nc already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "stage-examples: need root to install ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "stage-examples: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

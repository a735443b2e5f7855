#!/usr/bin/env bash
# Installs what the network-namespace interception test (crates/sluice/tests/netns.rs) needs
# besides iproute2 and util-linux: Debian's iptables (its iptables-nft writes nftables rules).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v iptables-restore >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# The TLS case: certificates made with openssl, the app's HTTPS call made with curl.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "stage-netns: iptables, ip, setpriv, openssl and curl already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "stage-netns: need root to install ${missing[*]}" >&2
    exit 1
fi
echo "stage-netns: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

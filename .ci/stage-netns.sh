#!/usr/bin/env bash
# Installs what the network-namespace interception test (crates/sluice/tests/netns.rs) needs
# besides iproute2 and util-linux: Debian's iptables (its iptables-nft writes nftables rules).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v iptables-restore >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "stage-netns: iptables, ip and setpriv already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "stage-netns: need root to install ${missing[*]}" >&2
    exit 1
fi
echo "stage-netns: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs the scrapers that crates/test-support/tests/scrape.rs runs against a live sluice:
# Debian's prometheus and victoria-metrics. The test starts its own instances on free loopback
# ports with temporary storage, so a packaged service left on 9090/8428 does not disturb it; we
# still keep the packages from starting one, as a stray daemon would only cost memory and CPU.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

missing=()
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/bin/victoria-metrics ] || missing+=(victoria-metrics)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "stage-scrape: prometheus and victoria-metrics already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "stage-scrape: need root to install ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
fi

# policy-rc.d exiting 101 tells invoke-rc.d not to start services during the install.
# An existing one (containers often ship it) is left alone.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
cleanup() {
    if [ "$own_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT

echo "stage-scrape: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# With systemd as init the units may still be enabled for the next boot; stop and disable them
# so nothing else holds 9090/8428 or writes to /var/lib while the tests run.
if [ -d /run/systemd/system ]; then
    for unit in prometheus victoria-metrics; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi

# Debian's victoria-metrics prints an empty -version, so ask dpkg.
dpkg-query -W -f='stage-scrape: ${Package} ${Version}\n' prometheus victoria-metrics

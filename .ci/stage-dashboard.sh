#!/usr/bin/env bash
# Installs what the dashboard's browser test needs: Debian's Chromium with a font (only when
# Chromium is missing) and the pinned Node packages of tests/browser. Exports nothing; the
# caller decides whether the browser test is required (SLUICE_REQUIRE_BROWSER=1).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== dashboard: chromium"
if [ -x /usr/bin/chromium ]; then
  echo "already installed"
else
  # Root on CI machines; elsewhere sudo when there is one.
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium fonts-dejavu-core
fi

echo "== dashboard: npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund)

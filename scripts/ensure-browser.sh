#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the browser tests (tests/browser) when
# /usr/bin/chromium is missing. Fails loudly when it cannot: a browser test that silently
# skips proves nothing. Test tools never download a browser of their own here.
set -euo pipefail

CHROMIUM="${SPOT_PIPELINES_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi

echo "ensure-browser: $CHROMIUM is missing; installing Debian's chromium and chromium-driver" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-browser: need root (or passwordless sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
command -v apt-get >/dev/null 2>&1 || { echo "ensure-browser: no apt-get; install Chromium at $CHROMIUM yourself" >&2; exit 1; }

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2

[ -x "$CHROMIUM" ] || { echo "ensure-browser: installed, but $CHROMIUM is still missing" >&2; exit 1; }
echo "ensure-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed" >&2

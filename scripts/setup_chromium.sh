#!/usr/bin/env bash
# Install Debian's headless-capable `chromium` when it is not on PATH: the tests open and
# screenshot every HTML page the project writes with it. A no-op when it is already there.
# Needs root (it is on CI); elsewhere install the `chromium` package yourself.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "[setup] chromium is not installed and this is not root: run 'apt-get install chromium' as root" >&2
    exit 1
fi
echo "[setup] installing Debian's chromium (for the HTML page screenshots in the tests)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "[setup] apt-get installed chromium but it is not on PATH" >&2; exit 1; }

#!/usr/bin/env bash
# The console's browser tests drive a real headless Chromium through Selenium. Chromium and its
# WebDriver come from the Debian registry (no browser download from elsewhere); this installs
# them only when they are missing. It needs root (as in CI) or passwordless sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install Chromium and chromedriver yourself" \
        "(the browser tests are skipped without them)." >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
        echo "install-browser: run as root (or with passwordless sudo) to install Chromium:" \
            "apt-get install chromium chromium-driver" >&2
        exit 0
    fi
    sudo="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version

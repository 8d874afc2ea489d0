#!/usr/bin/env bash
# Debian's chromium and chromedriver for the browser tests (tests/browser.py): installed with apt when missing and
# this user may (root, or sudo without a password); otherwise a note, and those tests skip. Nothing downloads a
# browser of its own.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
        echo "[setup] chromium/chromedriver missing and apt needs root: the browser tests will skip" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "[setup] chromium/chromedriver missing and no apt-get: the browser tests will skip" >&2
    exit 0
fi
echo "[setup] installing Debian's chromium and chromium-driver (browser tests)"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null

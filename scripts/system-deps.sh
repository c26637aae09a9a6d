#!/usr/bin/env bash
# System packages the browser check needs (Debian's chromium and chromedriver). Installs them
# when missing and apt-get is usable as root; otherwise the browser test skips and says why.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium chromium-driver >/dev/null || {
        apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
    }
else
    echo "note: chromium/chromedriver missing and not root: the browser check will be skipped" >&2
fi

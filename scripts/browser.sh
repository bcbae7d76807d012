#!/usr/bin/env bash
# Make sure Debian's chromium and chromedriver are there for tests/test_browser.py.
# Missing ones are installed with apt-get when that is possible (root, apt-get);
# otherwise say so: the browser test then skips with a reason (and fails under
# CI=true). This script never fails the run by itself.
set -u

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

have_browser() {
    [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]
}

have_browser && exit 0

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: $CHROMIUM or $CHROMEDRIVER missing and apt-get as root is not available" \
        "(the browser test will skip)"
    exit 0
fi

echo "browser: installing Debian's chromium and chromium-driver (apt-get)"
export DEBIAN_FRONTEND=noninteractive
timeout 600 apt-get update -qq >/dev/null 2>&1 || echo "browser: apt-get update failed"
timeout 900 apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || echo "browser: apt-get install chromium chromium-driver failed"

if have_browser; then
    echo "browser: $("$CHROMIUM" --version 2>/dev/null | head -n1)"
else
    echo "browser: chromium/chromedriver still missing (the browser test will skip)"
fi
exit 0

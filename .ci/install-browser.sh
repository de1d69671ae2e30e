#!/bin/sh
# Chromium and its WebDriver for the real-browser tests (tests/test_browser.py) and `ecglens report --pdf`.
# Idempotent: does nothing when both are present. Installs with apt-get when run as root on Debian/Ubuntu;
# otherwise says why not, and the browser tests skip with that reason.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: chromium/chromedriver absent and cannot install them here (needs root and apt-get);" \
         "the browser tests will skip" >&2
    exit 0
fi
echo "install-browser: installing chromium and chromium-driver" >&2
if ! { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
       { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; }; then
    echo "install-browser: apt-get could not install chromium; the browser tests will skip" >&2
fi
exit 0

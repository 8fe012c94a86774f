#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run the whole suite (python -m pytest).
# The browser test drives Debian's chromium with Playwright; Playwright never downloads a browser here.
set -euo pipefail
cd "$(dirname "$0")/.."
# fonts-droid-fallback: glyphs for DeepSeek's full-width special tokens in the screenshots
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-droid-fallback >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-droid-fallback >/dev/null
  else
    echo "chromium not found and cannot apt-get install it: the browser test will be skipped" >&2
  fi
fi
python3 -m pip install -q -r requirements-dev.txt
exec python3 -m pytest "$@"

#!/usr/bin/env bash
# Set up (once) and run the whole test suite, the real-browser test included.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
  # The browser test drives Debian's chromium; Korean text needs a CJK font to render.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "note: chromium and fonts-noto-cjk are missing (install them with apt); the browser test will be skipped" >&2
  fi
fi
scripts/setup.sh requirements-dev.txt
exec .venv/bin/python -m pytest "$@"

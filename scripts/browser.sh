#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (pytest -m browser) if it is missing. Idempotent.
# The tests drive it with Playwright for Python (the pip package only; never `playwright install`).
set -uo pipefail
log() { echo "[browser] $*"; }
for exe in chromium chromium-browser google-chrome; do
  if command -v "$exe" >/dev/null 2>&1; then log "$exe present: $(command -v "$exe")"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
  log "installing chromium from Debian's packages"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null 2>&1 \
    || log "install failed (the browser tests will skip with a reason)"
fi
command -v chromium >/dev/null 2>&1 && log "chromium ready: $(command -v chromium)" || log "chromium NOT available"
exit 0

#!/usr/bin/env bash
# Put Prometheus's promtool on PATH for the alert-rule tests (tests/admin/test_alert_rules.py) if it is missing.
# Only the promtool binary is taken from Debian's prometheus package (apt-get download + dpkg -x): installing the
# package would start a Prometheus server listening on every interface. Idempotent; never fails the caller.
set -uo pipefail
log() { echo "[promtool] $*"; }
if command -v promtool >/dev/null 2>&1; then log "present: $(command -v promtool)"; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then log "no apt-get: the alert-rule tests will skip with a reason"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1) \
  || { apt-get update -qq >/dev/null 2>&1; (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); } \
  || { log "download failed (the alert-rule tests will skip with a reason)"; exit 0; }
dpkg -x "$work"/prometheus_*.deb "$work/x" && install -m 0755 "$work/x/usr/bin/promtool" /usr/local/bin/promtool \
  && log "ready: $(promtool --version 2>&1 | head -1)" || log "could not install promtool (the alert-rule tests will skip)"
exit 0

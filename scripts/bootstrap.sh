#!/usr/bin/env bash
# Create .venv and install axis with its dev extras (idempotent, quick when nothing changed).
#
# The interpreter: $PYTHON when set; else the distribution's /usr/bin/python3 when it is 3.11 or newer (installing
# Debian's python3-venv if its venv lacks ensurepip); else python3 from PATH. Why the distribution's first: Debian
# and Ubuntu build CPython with PGO and LTO and link the interpreter statically, while a default pyenv build
# (what `python3` often is on a developer's machine) has neither and loads a shared libpython. Half of the axis's
# CPU is the interpreter: on the reference machine Debian's 3.11 ran pure Python in 0.80-0.83 of the time and the
# saturated axis with 0.92 of the CPU per document (median of five pairs; the seed replay within the noise), see
# bench/README.md, session 13. The Docker image's python:3.11-slim is such a build already. An existing .venv is
# kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

usable() { "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local system=/usr/bin/python3
  if [ -x "$system" ] && "$system" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    if ! usable "$system" && command -v apt-get >/dev/null 2>&1; then
      echo "[bootstrap] installing python3-venv from Debian's packages (the system Python's venv)" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >/dev/null 2>&1 || true
    fi
    if usable "$system"; then echo "$system"; return; fi
  fi
  echo python3
}

if [ ! -x .venv/bin/python ]; then
  PY=$(pick_python)
  echo "[bootstrap] creating .venv with $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.axis-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

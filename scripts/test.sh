#!/usr/bin/env bash
# The README's test command: start the services the tests use (RabbitMQ, PostgreSQL; installed from Debian's
# packages if missing), create .venv and install axis, lint, check the import layers and cycles, then run the test
# suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/browser.sh
bash scripts/promtool.sh                         # the alert rules' own test tool (promtool only)
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/mypy                                    # types: strict on axis.core, checked on the rest (pyproject.toml)
.venv/bin/lint-imports --no-cache                 # the layers and the pure core (pyproject.toml)
.venv/bin/python scripts/check_cycles.py         # no import cycle between two modules
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# The README's main job on a fresh machine: install what is needed, start RabbitMQ (and PostgreSQL),
# then bring the axis up and replay the seed-2019 scenario with the live dashboard. Extra args go to `axis demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/bootstrap.sh
exec .venv/bin/axis demo "$@"

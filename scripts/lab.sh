#!/usr/bin/env bash
# The main job: install what is missing, bring the seed's six-host cluster up on this machine, verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/pgha lab up "$@"

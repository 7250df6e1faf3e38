#!/usr/bin/env bash
# The test suite: unit tests, real-tool config checks, and the real lab (pytest, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/pytest -q -p no:cacheprovider "$@"

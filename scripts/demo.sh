#!/usr/bin/env bash
# Set the machine up (scripts/setup.sh) and run the Figure 2 demo (scripts/demo.py). Root only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
exec "$ROOT/.venv/bin/python" scripts/demo.py "$@"

#!/usr/bin/env bash
# One command: install, then run the platform with a simulated concentrator and meters.
# Extra arguments go to `gridwire demo` (see `gridwire demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/gridwire demo "$@"

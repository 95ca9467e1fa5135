#!/usr/bin/env bash
# One command: install, then run the whole test suite against real Mosquitto, influxd,
# PostgreSQL and the meter simulators. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"

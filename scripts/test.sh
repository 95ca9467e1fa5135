#!/usr/bin/env bash
# One command: install, then run the whole test suite against real Mosquitto, influxd,
# PostgreSQL and the meter simulators. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Two workers, each taking whole test files (module fixtures stay on one worker); every worker
# starts its own Mosquitto, influxd and PostgreSQL on free ports.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"

#!/usr/bin/env bash
# One command: install, then run the platform with a simulated concentrator and meters.
# Extra arguments go to `gridwire demo` (see `gridwire demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
Usage: scripts/demo.sh [OPTIONS]

Installs what Gridwire needs (scripts/install.sh: Debian packages and .venv), then runs
the whole platform on this machine with a simulated fleet (`gridwire demo`); Ctrl-C stops it.
Every option goes to `gridwire demo`:

  --dir PATH            where the demo keeps its data and configs (var/demo)
  --meters N            simulated P1 meters (3)
  --dlms-meters N       simulated DLMS/COSEM meters (2)
  --modbus-meters N     simulated Modbus solar inverters (1)
  --lights N            simulated MQTT-native street lights (20)
  --api-port PORT       the web API (8080)
  --mqtt-port PORT      Mosquitto's password listener, loopback (18830)
  --mqtt-tls-port PORT  Mosquitto's mutual-TLS listener, for the concentrator (18883)
  --influx-port PORT    influxd (18086)
  --interval SECONDS    between telegrams of each simulated meter (1.0)
  --duration SECONDS    stop after this long (default: Ctrl-C)
  --metrics-port PORT   Prometheus metrics from this port on (default: none)
  --log-level LEVEL     Python logging level (WARNING)
USAGE
}

# Help before anything is installed.
for arg in "$@"; do
  case "$arg" in -h|--help) usage; exit 0 ;; esac
done

bash scripts/install.sh
exec .venv/bin/gridwire demo "$@"

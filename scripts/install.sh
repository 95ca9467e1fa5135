#!/usr/bin/env bash
# Installs what Gridwire needs on a Debian/Ubuntu machine: Mosquitto, InfluxDB and PostgreSQL
# from the distribution, a virtualenv in .venv with the package and its extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# postgresql: the tests start throwaway clusters of their own with its binaries (no server needs
#   to run); a deployment's registry (docs/DEPLOY.md).
# curl: the demo prints its firmware recipe as curl commands.
# systemd: the tests check the units in config/systemd with systemd-analyze verify.
# docker-compose: the tests validate docker-compose.yml with `docker-compose config` (no engine needed).
# prometheus: the metrics tests scrape the processes with it (and promtool checks the exposition).
# chromium: the console's page tests drive it headless (no browser download).
# dpkg-dev, lintian: scripts/package_concentrator.py builds the concentrator's .deb; the tests
#   check it with lintian and install it into a throwaway root.
packages="mosquitto mosquitto-clients influxdb postgresql curl systemd docker-compose prometheus chromium dpkg-dev lintian"
if ! python3 -m venv --help >/dev/null 2>&1; then packages="$packages python3-venv"; fi
echo "==> apt-get install $packages"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> pip install -e .[edge,cloud,test]"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[edge,cloud,test]'
# dsmr-parser (MIT), the independent P1 parser the DSMR tests compare with. Every release pins
# dlms-cosem 21.3.2, which has no HLS-GMAC, and the DLMS interop tests need a current dlms-cosem;
# its telegram parser needs only cryptography and dlms-cosem's APDU classes, both installed above.
echo "==> pip install --no-deps dsmr-parser (a test tool)"
.venv/bin/python -m pip install -q --no-deps 'dsmr-parser==1.11.2'

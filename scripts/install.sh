#!/usr/bin/env bash
# Installs what Gridwire needs on a Debian/Ubuntu machine: Mosquitto and InfluxDB from the
# distribution, a virtualenv in .venv with the package and its extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# curl: the demo prints its firmware recipe as curl commands.
packages="mosquitto mosquitto-clients influxdb curl"
if ! python3 -m venv --help >/dev/null 2>&1; then packages="$packages python3-venv"; fi
echo "==> apt-get install $packages"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null

# The tests use the machine's PostgreSQL (127.0.0.1:5432); start it if it is installed but down.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> pip install -e .[edge,cloud,test]"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[edge,cloud,test]'

"""Local Mosquitto and influxd for the one-box platform (``gridwire demo``) and the tests.

Each server gets a directory of its own with a generated config; the ports are chosen by
the caller. The same generators are what ``docker-compose.yml`` users get from
``gridwire broker config``, so the demo, the tests and the containers run one configuration.
"""

from __future__ import annotations

import getpass
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from broker.errors import Unavailable
from broker.mosquitto_conf import Account, BrokerConfig, write_broker_files
from gridwire.procs import ManagedProcess, free_port, wait_for_port


class ServiceMissing(Unavailable):
    """A server binary the platform needs is not installed."""


def _binary(name: str, debian_package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise ServiceMissing(f"{name} is not installed: apt-get install {debian_package} "
                             "(the README's set-up command does this)")
    return found


class LocalMosquitto:
    """A mosquitto process running the project's generated configuration."""

    host = "127.0.0.1"

    def __init__(self, *, directory: Path, port: int, accounts: list[Account], autosave_interval: int | None = None,
                 tls_port: int | None = None, tls_ca_file: Path | None = None, tls_cert_file: Path | None = None,
                 tls_key_file: Path | None = None, tls_password_port: int | None = None) -> None:
        self.directory = directory
        self.port = port
        # The mutual-TLS listener for concentrators, and a TLS listener with password login
        # (None: not opened).
        self.tls_port = tls_port
        self.tls_password_port = tls_password_port
        self.accounts = {a.username: a for a in accounts}
        saving = {} if autosave_interval is None else {"autosave_interval": autosave_interval}
        config = BrokerConfig(port=port, data_dir=directory / "data", accounts=accounts, **saving, run_as=getpass.getuser(), tls_port=tls_port,
                              tls_ca_file=tls_ca_file, tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
                              tls_password_port=tls_password_port)
        self.config_file = write_broker_files(config, directory)
        self.process = ManagedProcess(argv=[_binary("mosquitto", "mosquitto"), "-c", str(self.config_file)],
                                      log=directory / "mosquitto.log", port=port)

    def credentials(self, username: str) -> dict[str, str]:
        account = self.accounts[username]
        return {"username": account.username, "password": account.password}

    def start(self) -> None:
        self.process.start()
        self._wait_tls()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.process.restart()
        self._wait_tls()

    def _wait_tls(self) -> None:
        # Listeners open one after the other; the process is ready when the TLS ones listen too.
        for port in (self.tls_port, self.tls_password_port):
            if port is not None:
                wait_for_port(port, proc=self.process.proc, log=self.process.log)


_INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true

[logging]
  level = "warn"
  suppress-logo = true
"""


class LocalInfluxd:
    """An influxd (1.x) with its own directories; keeps its ports across stop/start."""

    def __init__(self, *, directory: Path, port: int, rpc_port: int | None = None) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.config_file = directory / "influxdb.conf"
        self.config_file.write_text(_INFLUXD_CONFIG.format(root=directory.resolve(), http_port=port,
                                                           rpc_port=rpc_port or free_port()))
        self.process = ManagedProcess(argv=[_binary("influxd", "influxdb"), "-config", str(self.config_file)],
                                      log=directory / "influxd.log", port=port)

    def start(self, *, timeout: float = 30.0) -> None:
        self.process.start(timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as response:
                    if response.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"influxd on {self.url} never answered /ping:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process.running

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: what a crash or power cut looks like; the WAL carries the data over."""
        self.process.kill()

    def log_tail(self) -> str:
        log = self.directory / "influxd.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    def query(self, q: str, *, database: str | None = None) -> dict:
        """One InfluxQL statement over HTTP (set-up and checks; the product uses cloud.store)."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10.0) as response:
            return json.loads(response.read())

"""Local Mosquitto and influxd for the one-box platform (``gridwire demo``) and the tests, and a
throwaway PostgreSQL cluster for the tests and benchmarks.

Each server gets a directory of its own with a generated config; the ports are chosen by
the caller. The same generators are what ``docker-compose.yml`` users get from
``gridwire broker config``, so the demo, the tests and the containers run one configuration.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from broker.errors import Unavailable
from broker.mosquitto_conf import Account, BrokerConfig, write_broker_files
from gridwire.procs import ManagedProcess, as_user, free_port, wait_for_port


class ServiceMissing(Unavailable):
    """A server binary the platform needs is not installed."""


def _binary(name: str, debian_package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise ServiceMissing(f"{name} is not installed: apt-get install {debian_package} "
                             "(the README's set-up command does this)")
    return found


class _Server:
    """What every local server offers around its process (``self.process``)."""

    process: ManagedProcess

    @property
    def running(self) -> bool:
        return self.process.running

    def stop(self) -> None:
        """Graceful stop (the server's own stop signal)."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: what a crash or power cut looks like."""
        self.process.kill()

    def log_tail(self) -> str:
        log = self.process.log
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


class LocalMosquitto(_Server):
    """A mosquitto process running the project's generated configuration."""

    host = "127.0.0.1"

    def __init__(self, *, directory: Path, port: int, accounts: list[Account], autosave_interval: int | None = None,
                 tls_port: int | None = None, tls_ca_file: Path | None = None, tls_cert_file: Path | None = None,
                 tls_key_file: Path | None = None, tls_password_port: int | None = None,
                 tls_crl_file: Path | None = None) -> None:
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
                              tls_password_port=tls_password_port, tls_crl_file=tls_crl_file,
                              pid_file=directory / "mosquitto.pid")
        self.pid_file = config.pid_file
        self.config_file = write_broker_files(config, directory)
        self.process = ManagedProcess(argv=[_binary("mosquitto", "mosquitto"), "-c", str(self.config_file)],
                                      log=directory / "mosquitto.log", port=port)

    def credentials(self, username: str) -> dict[str, str]:
        account = self.accounts[username]
        assert account.password is not None, f"{username} logs in with a certificate"
        return {"username": account.username, "password": account.password}

    def ensure_account(self, account: Account) -> None:
        """Create (or update) a broker account now, at run time, as the first ``api`` account
        given at start (a test's or the demo's concentrator certificate needs its CN's account)."""
        import asyncio
        import threading

        from broker.dynsec import DynsecAccounts
        from broker.session import MqttSession

        admin = next(a for a in self.accounts.values() if a.role == "api")

        async def ensure() -> None:
            async with MqttSession(client_id=f"ensure-{os.getpid()}-{threading.get_ident()}", host=self.host,
                                   port=self.port, username=admin.username, password=admin.password,
                                   session_expiry=0, clean_start=True) as session:
                accounts = DynsecAccounts(session)
                await accounts.start()
                await accounts.ensure(account)

        failed: list[BaseException] = []
        # Its own event loop in its own thread: callers may be inside a running loop.
        worker = threading.Thread(target=lambda: _capture(failed, lambda: asyncio.run(ensure())),
                                  name="ensure-account")
        worker.start()
        worker.join()
        if failed:
            raise failed[0]

    def reload(self) -> None:
        """SIGHUP: the broker reads its CRL (and other reloadable settings) again."""
        assert self.process.proc is not None
        os.kill(self.process.proc.pid, signal.SIGHUP)

    def start(self) -> None:
        self.process.start()
        self._wait_tls()

    def restart(self) -> None:
        self.process.restart()
        self._wait_tls()

    def _wait_tls(self) -> None:
        # Listeners open one after the other; the process is ready when the TLS ones listen too.
        for port in (self.tls_port, self.tls_password_port):
            if port is not None:
                wait_for_port(port, proc=self.process.proc, log=self.process.log)


def _capture(failed: list[BaseException], run: object) -> None:
    try:
        run()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
        failed.append(exc)


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


class LocalInfluxd(_Server):
    """An influxd (1.x) with its own directories; keeps its ports across stop/start. A kill is
    what a crash looks like: the WAL carries the data over."""

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

    def query(self, q: str, *, database: str | None = None) -> dict:
        """One InfluxQL statement over HTTP (set-up and checks; the product uses cloud.store)."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10.0) as response:
            return json.loads(response.read())


def postgres_bindir(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The bin directory of the newest PostgreSQL installed (Debian and Ubuntu keep each major
    version in ``/usr/lib/postgresql/<version>/bin``, off PATH); else where PATH has ``initdb``."""
    def version(initdb: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in initdb.parent.parent.name.split(".") if part.isdigit())

    installed = sorted(root.glob("*/bin/initdb"), key=version)
    if installed:
        return installed[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise ServiceMissing("PostgreSQL is not installed: apt-get install postgresql "
                             "(scripts/install.sh does this)")
    return Path(on_path).resolve().parent


class LocalPostgres(_Server):
    """A throwaway PostgreSQL cluster: ``initdb`` into a new temporary directory, trust
    authentication for the superuser ``postgres``, listening on 127.0.0.1:``port`` only (and on a
    Unix socket in its directory). :meth:`remove` deletes it.

    ``initdb`` and ``postgres`` refuse to run as root, so as root both run as the ``postgres``
    account (Debian's ``postgresql`` package makes it), and the directory is made under the
    system's temporary directory, which that account can reach. Unless ``durable``, flushing to
    disk is off (``fsync``, ``full_page_writes``, ``synchronous_commit``): a killed server still
    keeps what it wrote, only a crash of the machine would lose it, and the cluster does not
    outlive the run anyway. Benchmarks ask for ``durable`` to measure what a real server does.
    """

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, *, port: int, durable: bool = False) -> None:
        self.port = port
        bindir = postgres_bindir()
        self._run_as = "postgres" if os.geteuid() == 0 else None
        self.directory = Path(tempfile.mkdtemp(prefix="gridwire-pg-"))
        self.data_dir = self.directory / "data"
        if self._run_as is not None:
            account = as_user(self._run_as)
            os.chown(self.directory, account["user"], account["group"])
        initdb = subprocess.run([str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user, "-A", "trust",
                                 "-E", "UTF8", "--no-locale", "--no-sync"],
                                capture_output=True, text=True, check=False, **as_user(self._run_as))
        if initdb.returncode != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}{initdb.stderr}")
        settings = {"listen_addresses": self.host, "unix_socket_directories": str(self.directory)}
        if not durable:
            # Databases live for one test: flushing and vacuuming them is work for nothing.
            settings |= {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off", "autovacuum": "off"}
        argv = [str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
        self.process = ManagedProcess(argv=argv, log=self.directory / "postgres.log", port=port,
                                      user=self._run_as, stop_signal=signal.SIGINT)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy (asyncpg) URL of ``database`` on this cluster."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the server; return once it accepts connections (it listens before that)."""
        self.process.start(timeout=timeout)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.process.running or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} never became ready:\n{self.log_tail()}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        # postmaster.pid's eighth line is the server's state; "ready" once it accepts connections.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) > 7 and lines[7].strip() == "ready"

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

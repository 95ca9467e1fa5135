"""``gridwire probe`` and the ready file: the health checks of docker-compose.yml, run against
real processes (a cloud process, a concentrator, an HTTP server, a closed port)."""

from __future__ import annotations

import asyncio
import http.server
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.pki import CertificateAuthority
from cloud.migrations import migrate
from gridwire.cli import app
from gridwire.cli_common import READY_FILE_ENV
from gridwire.procs import ManagedProcess, free_port
from tests.fixtures.mosquitto import CLOUD, MosquittoServer
from tests.fixtures.waiting import wait_for


def probe(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["probe", *args])
    return result.exit_code, result.output


async def _ready_cycle(process: ManagedProcess, ready_file: Path) -> None:
    """Not ready before it starts; ready once it serves; not ready once it has stopped."""
    assert probe("ready", str(ready_file))[0] == 1
    process.start()
    try:
        await wait_for(ready_file.exists, timeout=60, what=f"{process.argv[3:5]} to write its ready file")
        code, output = probe("ready", str(ready_file))
        assert code == 0 and f"pid {process.proc.pid}" in output, output
    finally:
        process.stop()
    assert process.proc.returncode == 0, process.log.read_text()
    code, output = probe("ready", str(ready_file))
    assert code == 1 and "does not exist" in output


async def test_a_cloud_process_is_ready_once_it_serves(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    ready_file = tmp_path / "timesync.ready"
    env = {"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
           "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
           "GRIDWIRE_DATABASE_URL": url, READY_FILE_ENV: str(ready_file)}
    process = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "timesync"], env=env,
                             log=tmp_path / "timesync.log")
    await _ready_cycle(process, ready_file)


async def test_a_concentrator_is_ready_once_connected(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    config = tmp_path / "concentrator.toml"
    config.write_text('concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
                      'invocation_counters = "counters.sqlite"\n\n'
                      f'[broker]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
                      'username = "conc-1"\npassword = "conc-1-pw"\n')
    ready_file = tmp_path / "concentrator.ready"
    process = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config)],
                             env={READY_FILE_ENV: str(ready_file)}, log=tmp_path / "concentrator.log")
    await _ready_cycle(process, ready_file)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
        self.wfile.write(b"ok" if self.path == "/healthz" else b"degraded: influx unavailable")

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, name="health-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_server() -> Iterator[int]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health))


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server with a certificate from a CA of its own; the CA certificate's path."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    files = ca.issue_server(tmp_path / "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield port, ca.cert_file


async def test_probe_http_and_tcp(http_server: int) -> None:
    code, output = await asyncio.to_thread(probe, "http", f"http://127.0.0.1:{http_server}/healthz")
    assert code == 0 and "answered 200" in output
    code, output = await asyncio.to_thread(probe, "http", f"http://127.0.0.1:{http_server}/degraded")
    assert code == 1 and "answered 503: degraded: influx unavailable" in output
    assert (await asyncio.to_thread(probe, "tcp", "127.0.0.1", str(http_server)))[0] == 0
    closed = free_port()
    code, output = probe("tcp", "127.0.0.1", str(closed))
    assert code == 1 and f"127.0.0.1:{closed}" in output
    code, output = probe("http", f"http://127.0.0.1:{closed}/healthz", "--timeout", "2")
    assert code == 1 and "refused" in output.lower()


async def test_probe_https_verifies_the_server_against_the_ca(https_server: tuple[int, Path]) -> None:
    port, ca_file = https_server
    for host in ("127.0.0.1", "localhost"):  # the names the platform's server certificates carry
        code, output = await asyncio.to_thread(probe, "http", f"https://{host}:{port}/healthz", "--ca-file",
                                               str(ca_file))
        assert code == 0, output
    # Without the platform's CA the certificate is not trusted: unhealthy, with the reason.
    code, output = await asyncio.to_thread(probe, "http", f"https://127.0.0.1:{port}/healthz")
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in output, output


async def test_probe_waits_for_a_service_that_is_starting(tmp_path: Path) -> None:
    """``--wait`` keeps asking: a ready file written while it waits makes it healthy; one never
    written leaves it unhealthy once the wait is over."""
    ready_file = tmp_path / "late.ready"
    waiting = asyncio.create_task(asyncio.to_thread(probe, "ready", str(ready_file), "--wait", "60"))
    await asyncio.sleep(0.3)  # the scenario: the process becomes ready a moment after the probe began
    ready_file.write_text("4242\n")
    code, output = await waiting
    assert code == 0 and "pid 4242" in output, output
    code, output = await asyncio.to_thread(probe, "ready", str(tmp_path / "never.ready"), "--wait", "1")
    assert code == 1 and "does not exist" in output

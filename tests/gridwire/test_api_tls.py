"""The real ``gridwire cloud api`` process serves HTTPS, or plain HTTP only when told so: with no
certificate and no ``--insecure-http`` (or GRIDWIRE_API_INSECURE_HTTP) it refuses to start with
one clear line and exit 2; told so, it serves plain HTTP and logs a warning saying so once. It
runs on uvloop's event loop."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.pki import CertificateAuthority
from tests.fixtures.mosquitto import CLOUD, MosquittoServer
from tests.fixtures.procs import ManagedProcess, free_port

SECRET = "api-tls-test-secret-0123456789abcdefghij"
WARNING = "the API serves plain HTTP on 127.0.0.1:{port} (insecure HTTP was asked for)"
REFUSAL = ("error: the API serves HTTPS: set GRIDWIRE_API_TLS_CERT_FILE and GRIDWIRE_API_TLS_KEY_FILE (e.g. from "
           "gridwire broker pki server), or allow plain HTTP explicitly with --insecure-http "
           "(GRIDWIRE_API_INSECURE_HTTP=true)\n")


@pytest.fixture
def api_env(mosquitto: MosquittoServer, tmp_path: Path) -> dict[str, str]:
    return {"GRIDWIRE_JWT_SECRET": SECRET, "GRIDWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite'}",
            "GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
            "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
            "GRIDWIRE_INFLUX_CREATE_DATABASE": "false"}


def api(*options: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gridwire.cli", "cloud", "api", "--port", str(port), *options]


def refused(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**_inherited(), **env}, capture_output=True, text=True, timeout=120)


def _inherited() -> dict[str, str]:
    """The test's environment without any GRIDWIRE_API_* setting that could decide the answer."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDWIRE_API_")}


@pytest.fixture
def serving() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def test_no_certificate_and_no_insecure_flag_refuses_to_start(api_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    answer = refused(api(port=port), api_env)
    assert answer.returncode == 2, answer.stderr
    assert answer.stderr == REFUSAL and "Traceback" not in answer.stderr and answer.stdout == ""
    # Nothing listens on the port it was given.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
    # Half a certificate is refused too, naming both settings.
    half = refused(api(port=port), {**api_env, "GRIDWIRE_API_TLS_CERT_FILE": str(tmp_path / "server.pem")})
    assert half.returncode == 2
    assert half.stderr == "error: GRIDWIRE_API_TLS_CERT_FILE and GRIDWIRE_API_TLS_KEY_FILE go together: set both\n"


@pytest.mark.parametrize("how", ["--insecure-http", "GRIDWIRE_API_INSECURE_HTTP"])
def test_insecure_http_when_asked_serves_plain_http_and_warns(api_env: dict[str, str], tmp_path: Path,
                                                              serving: list[ManagedProcess], how: str) -> None:
    port = free_port()
    options, env = (["--insecure-http"], api_env) if how.startswith("--") else \
        ([], {**api_env, "GRIDWIRE_API_INSECURE_HTTP": "true"})
    log = tmp_path / "api.log"
    process = ManagedProcess(argv=api(*options, port=port), log=log, port=port, env={**_inherited(), **env})
    serving.append(process)
    process.start(timeout=60)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert http.get("/docs").status_code == 200
        assert http.get("/v1/installation/devices").status_code == 401  # plain, yet still authenticated
    warnings = [line for line in log.read_text().splitlines() if WARNING.format(port=port) in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], log.read_text()


def test_with_a_certificate_it_serves_https_only(api_env: dict[str, str], tmp_path: Path,
                                                 serving: list[ManagedProcess]) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    files = ca.issue_server(tmp_path / "server")
    port = free_port()
    log = tmp_path / "api.log"
    process = ManagedProcess(argv=api(port=port), log=log, port=port, env={
        **_inherited(), **api_env, "GRIDWIRE_API_TLS_CERT_FILE": str(files.cert_file),
        "GRIDWIRE_API_TLS_KEY_FILE": str(files.key_file)})
    serving.append(process)
    process.start(timeout=60)
    trusted = ssl.create_default_context(cafile=str(ca.cert_file))
    with httpx.Client(verify=trusted, timeout=10) as http:
        assert http.get(f"https://127.0.0.1:{port}/docs").status_code == 200
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the same port gets no answer
        httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
    assert "plain HTTP" not in log.read_text()
    # On asyncio's own event loop: no process asks for uvloop (cloud.runtime.api_event_loop).
    assert "uvloop" not in log.read_text()

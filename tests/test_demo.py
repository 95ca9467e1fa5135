"""The README's run command: `gridwire demo` brings the platform up, readings are queryable
within seconds, and a street light can be switched through the web API."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx

from gridwire.procs import ManagedProcess, free_port


def test_demo_serves_readings_and_switches_a_light(tmp_path):
    api_port = free_port()
    log = tmp_path / "demo.log"
    demo = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "demo", "--dir", str(tmp_path / "demo"),
                                "--api-port", str(api_port), "--mqtt-port", str(free_port()),
                                "--mqtt-tls-port", str(free_port()), "--influx-port", str(free_port()),
                                "--lights", "3", "--interval", "0.5"],
                          log=log, port=api_port)
    demo.start(timeout=60)
    try:
        deadline = time.monotonic() + 30
        while "bearer" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        token = re.search(r"bearer\s+(\S+)", log.read_text()).group(1)
        # The concentrator is on mutual TLS: its config has certificates and no password.
        concentrator_toml = (tmp_path / "demo" / "edge" / "concentrator.toml").read_text()
        assert "cert_file" in concentrator_toml and "password =" not in concentrator_toml.split("[[meters]]")[0]
        assert "--cafile" in log.read_text()
        headers = {"Authorization": f"Bearer {token}"}
        now = datetime.now(UTC)
        query = {"readingTimeStart": (now - timedelta(days=2)).isoformat(),
                 "readingTimeEnd": (now + timedelta(days=1)).isoformat(), "pageSize": 10}
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=10) as api:
            total = 0
            while total < 100 and time.monotonic() < deadline + 30:
                answer = api.post("/v1/meterReadings", json=query)
                total = answer.json().get("totalRows", 0) if answer.status_code == 200 else 0
                time.sleep(0.5)
            assert total >= 100, answer.text  # P1 live readings plus the DLMS meters' backfilled day

            accepted = api.post("/v1/publiclighting/devices/light-1/light", json={"on": True, "dimLevel": 70})
            assert accepted.status_code == 202, accepted.text
            result: dict = {}
            while result.get("status") != "SUCCEEDED" and time.monotonic() < deadline + 60:
                result = api.get(accepted.json()["resultUrl"]).json()
                time.sleep(0.2)
            assert result["status"] == "SUCCEEDED", result
            assert result["result"]["on"] is True and result["result"]["dimLevel"] == 70
    finally:
        demo.stop()
    assert "Traceback" not in log.read_text()

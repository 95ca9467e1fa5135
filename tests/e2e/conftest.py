"""The whole P1 data path on real parts: simulator on a pty, concentrator, Mosquitto, ingest,
influxd and the web API."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from cloud.api.app import create_app
from cloud.auth import issue_token
from cloud.settings import ApiSettings, InfluxSettings
from cloud.store.influx import InfluxStore
from edge.p1.simulator import MeterModel, P1Simulator
from gridwire.procs import ManagedProcess
from tests.fixtures.influx import stored_rows
from tests.fixtures.ingest import IngestRig
from tests.fixtures.waiting import wait_for  # noqa: F401 - re-exported for the tests here

METER = "0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f"
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
JWT_SECRET = "e2e-secret-not-for-production-use-only"


def write_concentrator_files(directory: Path, *, port: str, mqtt_port: int, live_batch: bool = False) -> Path:
    """The P1 meter's adapter config and the concentrator's; ``live_batch``: live readings go in
    batches on concentrator/conc-1/batch/meterReading (a window of 0.25 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meter.yaml").write_text(yaml.safe_dump({
        "meterIndividualId": METER, "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    config = directory / "concentrator.toml"
    config.write_text(
        # A short confirm timeout: what the broker lost is sent again after it, so the
        # failure tests need not wait the default 30 s.
        'concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstatus_interval = 5\nconfirm_timeout = 5\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\nusername = "conc-1"\npassword = "conc-1-pw"\n\n'
        # Every telegram, each written at once: these tests count every one through the whole path.
        f'[[meters]]\nprotocol = "p1"\nport = "{port}"\nadapter_config = "meter.yaml"\nforward = "every"\nbatch_s = 0\n'
        + ('\n[live_batch]\nenabled = true\nwindow_s = 0.25\n' if live_batch else ''))
    return config


def simulator(count: int, *, interval: float = 0.005) -> P1Simulator:
    return P1Simulator(model=MeterModel(start=T0, gas_channel=None), interval=interval, count=count)


def expected_energy(model: MeterModel, count: int) -> dict[datetime, float]:
    """OBIS_1.8.1 of every telegram, computed incrementally from the simulator's own model."""
    from edge.p1.simulator import _Accumulator  # the model's integrator: the truth the meter sends

    state, out = _Accumulator(model), {}
    for n in range(count):
        out[model.timestamp(n)] = float(state.values(n).delivered_t1)
        state.add(n)
    return out


def stored_energy(influxd, db: str) -> list[tuple[datetime, float, str]]:
    return [(datetime.fromtimestamp(stamp / 1e9, UTC), energy, reading_id)
            for _, stamp, (energy, reading_id) in stored_rows(influxd, db, "OBIS_1.8.1", "reading_id")]


def outbox_reading_times(path: Path) -> set[datetime]:
    """Reading times of messages still in a (dead) concentrator's outbox."""
    import json

    with sqlite3.connect(path) as db:
        # Readings only: the meter's power failure log waits there too, as an event (no event consumer runs here).
        rows = db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/smartMeterMessage/%'").fetchall()
    return {datetime.fromisoformat(json.loads(p)["readingTime"]).astimezone(UTC) for (p,) in rows}




def port_open_logged(config: Path, times: int) -> bool:
    """Whether the concentrator process(es) logged opening the P1 port ``times`` times so far."""
    log = config.parent / "concentrator.log"
    return log.exists() and log.read_text(errors="replace").count(": open (") >= times


def concentrator_process(config: Path) -> ManagedProcess:
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config),
                                "--log-level", "INFO"], log=config.parent / "concentrator.log")


@dataclass
class Api:
    client: httpx.AsyncClient
    token: str

    async def readings(self, start: datetime, end: datetime, *, page_size: int = 100) -> list[dict]:
        out, page = [], 1
        while True:
            response = await self.client.post("/v1/meterReadings", headers={"Authorization": f"Bearer {self.token}"},
                                              json={"readingTimeStart": start.isoformat(),
                                                    "readingTimeEnd": end.isoformat(),
                                                    "pageNumber": page, "pageSize": page_size})
            assert response.status_code == 200, response.text
            body = response.json()
            out += body["meterReadings"]
            if page * page_size >= body["totalRows"]:
                return out
            page += 1


@pytest.fixture
async def api(influxd, influx_db) -> AsyncIterator[Api]:
    store = InfluxStore(url=influxd.url, database=influx_db)
    app = create_app(settings=ApiSettings(influx=InfluxSettings(url=influxd.url, database=influx_db), jwt_secret=JWT_SECRET),
                     store=store)
    token = issue_token(secret=JWT_SECRET, org="org-a", meters=[METER], ttl=timedelta(hours=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield Api(client=client, token=token)
    await store.aclose()


__all__ = ["IngestRig"]

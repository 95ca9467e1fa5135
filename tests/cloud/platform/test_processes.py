"""Every ``gridwire cloud`` process is built from the settings it is given: the broker login,
TLS, the in-flight limit and the database pool, against a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from broker.session import ConnectError, MqttSession
from cloud.migrations import migrate
from cloud.platform import process_runner
from cloud.settings import DatabaseSettings, MqttSettings
from edge.timesync import TimeSyncClient
from tests.cloud.platform.test_platform import cloud_login, platform_settings
from tests.fixtures.mosquitto import CLOUD, MosquittoServer, TlsMosquitto

# Name -> the role its session and database engine are made for.
ROLES = {"scheduler": "scheduler", "monitor": "monitor", "timesync": "timesync", "campaigns": "campaigns",
         "core": "core", "domain": "domain", "firmware-server": "firmware"}


@pytest.mark.parametrize("name", sorted(ROLES))
async def test_each_process_uses_the_broker_and_pool_options_it_is_given(
        name: str, mosquitto: MosquittoServer, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Before one settings model the platform rebuilt the scheduler's, monitor's, time service's
    and campaign runner's settings from five fields, so they ran with the session's default
    in-flight limit and SQLAlchemy's default pool whatever GRIDWIRE_MQTT_INFLIGHT and the pool
    options said."""
    await migrate(postgres_url)
    client_id = f"{name}-{uuid.uuid4().hex[:6]}"
    settings = platform_settings(mosquitto, postgres_url, mqtt=cloud_login(mosquitto, inflight=7, client_id=client_id),
                                 database=DatabaseSettings(url=postgres_url, pool_size=3, max_overflow=1))
    stop, ready = asyncio.Event(), asyncio.Event()
    with caplog.at_level(logging.INFO, logger="cloud.runtime"):
        task = asyncio.create_task(process_runner(name, settings, ready=ready)(stop), name=name)
        try:
            await asyncio.wait_for(ready.wait(), 30)
        finally:
            stop.set()
            await task
    role = ROLES[name]
    assert (f"{role}: MQTT client {client_id} to {mosquitto.host}:{mosquitto.port} as {CLOUD.username} (plain), "
            "7 in flight, receive maximum 7") in caplog.text
    if name != "firmware-server":  # the chunk server reads files, not the database
        assert f"{role}: database {settings.database.safe_url()}, pool 3 + 1" in caplog.text


def tls_login(broker: TlsMosquitto, **changes: object) -> MqttSettings:
    """The cloud account on the broker's TLS listener with password login."""
    values = {"host": broker.server.host, "port": broker.tls_password_port, "username": CLOUD.username,
              "password": CLOUD.password, "ca_file": broker.ca.cert_file, "client_id": f"tls-{uuid.uuid4().hex[:8]}",
              **changes}
    return MqttSettings(**values)


async def test_a_cloud_process_logs_in_over_tls_with_a_password(tls_mosquitto: TlsMosquitto, tmp_path) -> None:
    """The time service on the password TLS listener answers a concentrator on the mutual-TLS one."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    settings = platform_settings(tls_mosquitto.server, url, mqtt=tls_login(tls_mosquitto))
    cid = f"tls-time-{uuid.uuid4().hex[:6]}"
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(process_runner("timesync", settings, ready=ready)(stop), name="timesync")
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with MqttSession(client_id=cid, host=tls_mosquitto.server.host, port=tls_mosquitto.tls_port,
                               tls=tls_mosquitto.client_tls(cid), session_expiry=0) as conc:
            client = TimeSyncClient(session=conc, concentrator_id=cid)
            await client.start()
            sample = await client.exchange(timeout=10)
        # Both clocks are this host's: the measured offset is within the exchange's delay.
        assert sample.delay >= 0 and abs(sample.offset) <= sample.delay / 2 + 1e-3
    finally:
        stop.set()
        await task


async def test_a_wrong_password_over_tls_is_refused(tls_mosquitto: TlsMosquitto, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    settings = platform_settings(tls_mosquitto.server, url, mqtt=tls_login(tls_mosquitto, password="not-it"))
    with pytest.raises(ConnectError, match="refused"):
        await process_runner("timesync", settings)(asyncio.Event())

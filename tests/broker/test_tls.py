"""Mutual TLS per concentrator against a real Mosquitto: the certificate's CN is the identity."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from broker import topics
from broker.pki import CertificateAuthority
from broker.schemas.status import ConcentratorStatus
from broker.session import ConnectError, Message, MqttSession, NegativeAckError, TlsSettings
from edge.concentrator import Concentrator
from edge.config import load_config
from tests.fixtures.mosquitto import TlsMosquitto
from tests.fixtures.waiting import wait_for

# A refused TLS handshake shows up as a missing CONNACK; keep that wait short.
REFUSED_WITHIN = 2.0


def tls_session(broker: TlsMosquitto, tls: TlsSettings, **kwargs) -> MqttSession:
    return MqttSession(client_id=kwargs.pop("client_id", f"tls-{uuid.uuid4().hex[:8]}"), host=broker.server.host,
                       port=broker.tls_port, tls=tls, **kwargs)


def cloud_session(broker: TlsMosquitto) -> MqttSession:
    return MqttSession(client_id=f"cloud-{uuid.uuid4().hex[:8]}", host=broker.server.host, port=broker.server.port,
                       **broker.server.credentials("gridwire-cloud"))


async def assert_refused(broker: TlsMosquitto, tls: TlsSettings) -> None:
    session = tls_session(broker, tls, connect_timeout=REFUSED_WITHIN)
    try:
        with pytest.raises(ConnectError):
            await session.connect()
        assert session.connections == 0
    finally:
        await session.close()


async def test_certificate_identity_publishes_in_its_own_subtree_only(tls_mosquitto):
    received: list[Message] = []

    async def handler(msg: Message) -> None:
        received.append(msg)

    cid = f"tls-{uuid.uuid4().hex[:6]}"
    own = f"concentrator/{cid}/smartMeterMessage/m-1/meterReading"
    async with cloud_session(tls_mosquitto) as cloud, tls_session(tls_mosquitto, tls_mosquitto.client_tls(cid)) as conc:
        await cloud.subscribe(own, handler)
        await conc.publish(own, b"reading")
        with pytest.raises(NegativeAckError) as err:
            await conc.publish("concentrator/conc-1/smartMeterMessage/m-1/meterReading", b"spoof")
        assert err.value.reason_code == 0x87  # not authorized: the CN fences it
        # The session survives the refusal and still reaches its own subtree.
        await conc.publish(own, b"second")
        await wait_for(lambda: len(received) == 2, timeout=20, what="both messages")
    assert [m.payload for m in received] == [b"reading", b"second"]


async def test_no_client_certificate_cannot_connect(tls_mosquitto):
    await assert_refused(tls_mosquitto, TlsSettings(ca_file=str(tls_mosquitto.ca.cert_file)))


async def test_certificate_from_another_ca_cannot_connect(tls_mosquitto, tmp_path):
    rogue = CertificateAuthority.create(tmp_path / "rogue", name="Rogue CA")
    files = rogue.issue_client(tmp_path / "rogue", "conc-1")
    await assert_refused(tls_mosquitto, TlsSettings(ca_file=str(tls_mosquitto.ca.cert_file),
                                                   cert_file=str(files.cert_file), key_file=str(files.key_file)))


async def test_client_refuses_a_broker_it_does_not_trust(tls_mosquitto, tmp_path):
    other = CertificateAuthority.create(tmp_path / "other")
    own = tls_mosquitto.client_tls("tls-distrust")
    await assert_refused(tls_mosquitto, TlsSettings(ca_file=str(other.cert_file), cert_file=own.cert_file,
                                                   key_file=own.key_file))


async def test_plain_listener_still_requires_a_password(tls_mosquitto):
    server = tls_mosquitto.server
    anonymous = MqttSession(client_id="anon", host=server.host, port=server.port, connect_timeout=REFUSED_WITHIN)
    try:
        with pytest.raises(ConnectError, match="refused"):
            await anonymous.connect()
    finally:
        await anonymous.close()
    async with MqttSession(client_id="conc-2-plain", host=server.host, port=server.port,
                           **server.credentials("conc-2")) as conc:
        await conc.publish("concentrator/conc-2/status", b"password login still works")


def write_tls_config(directory: Path, *, cid: str, port: int, tls: TlsSettings) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "concentrator.toml"
    # No username or password: the broker takes the identity from the certificate.
    path.write_text(
        f'concentrator_id = "{cid}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        'invocation_counters = "counters.sqlite"\nstatus_interval = 0.5\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\nca_file = "{tls.ca_file}"\n'
        f'cert_file = "{tls.cert_file}"\nkey_file = "{tls.key_file}"\n')
    return path


async def test_concentrator_reaches_the_broker_over_mutual_tls(tls_mosquitto, tmp_path):
    cid = f"tls-conc-{uuid.uuid4().hex[:6]}"
    config = load_config(write_tls_config(tmp_path, cid=cid, port=tls_mosquitto.tls_port,
                                          tls=tls_mosquitto.client_tls(cid)))
    births: list[ConcentratorStatus] = []

    async def on_status(msg: Message) -> None:
        births.append(ConcentratorStatus.model_validate_json(msg.payload))

    async with cloud_session(tls_mosquitto) as cloud:
        await cloud.subscribe(topics.concentrator_status(cid), on_status)
        concentrator = Concentrator.from_config(config)
        stop = asyncio.Event()
        task = asyncio.create_task(concentrator.run(stop), name="tls-concentrator")
        try:
            await wait_for(lambda: any(s.state == "ONLINE" for s in births), timeout=20, what="its birth")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        await wait_for(lambda: births[-1].state == "OFFLINE", timeout=20, what="its will")
    online = next(s for s in births if s.state == "ONLINE")
    assert online.concentrator_id == cid
    assert births[-1].reason == "shut down"

"""Provisioning a concentrator end to end: the real platform API (uvicorn, SQLite registry, the
CA of a real Mosquitto's mutual-TLS listener), the real `gridwire concentrator provision`
command, and a real concentrator connecting with what it wrote."""

from __future__ import annotations

import asyncio
import shutil
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from broker import topics
from broker.pki import common_name
from broker.schemas.status import ConcentratorStatus
from broker.session import Message, MqttSession, NegativeAckError, TlsSettings
from cloud.auth import issue_token
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, PlatformRole, Protocol, Registry
from edge.concentrator import Concentrator
from edge.config import load_config
from gridwire.cli import app
from tests.cloud.platform.test_platform import platform_settings, serve_with_lifespan
from tests.fixtures.mosquitto import CLOUD, FLEET, TlsMosquitto
from tests.fixtures.waiting import wait_for

SECRET = "provisioning-test-secret-0123456789"
ADMIN, INSTALLER, OTHER = "operator", "installer", "other"


def token(org: str) -> str:
    return issue_token(secret=SECRET, org=org)


def bearer(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(org)}"}


@asynccontextmanager
async def platform(broker: TlsMosquitto, url: str, *, pki_dir: Path | None) -> AsyncIterator[str]:
    settings = platform_settings(broker.server, url, jwt_secret=SECRET, pki_dir=pki_dir, provision_broker_host="127.0.0.1",
                                 provision_broker_port=broker.tls_port, broker_reserved_names=FLEET.username)
    async with serve_with_lifespan(settings) as base:
        yield base


@pytest.fixture
async def api(tls_mosquitto: TlsMosquitto, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    async with platform(tls_mosquitto, url, pki_dir=tls_mosquitto.pki_dir) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN))
            for org in (INSTALLER, OTHER):
                await registry.add_organisation(OrganisationCreate(identification=org, name=org))
            await registry.create_device(DeviceCreate(identification="meter-x", device_type=DeviceType.SMART_METER,
                                                      protocol=Protocol.DLMS), owner=ADMIN)
        yield base, url


def provision(base: str, cid: str, out: Path, org: str = ADMIN):
    return CliRunner().invoke(app, ["concentrator", "provision", "--api", base, "--token", token(org), "--id", cid,
                                    "--out", str(out), "--data-dir", str(out / "data")])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_provisioned_concentrator_connects_over_mutual_tls_in_its_own_subtree_only(api, tls_mosquitto,
                                                                                        tmp_path):
    base, _ = api
    cid = f"field-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "etc"
    result = await asyncio.to_thread(provision, base, cid, out, INSTALLER)
    assert result.exit_code == 0, result.output
    assert "registered and provisioned" in result.output and "next steps" in result.output
    tls_dir = out / "tls"
    for path in (tls_dir / "ca.pem", tls_dir / f"{cid}.pem", tls_dir / f"{cid}.key", out / "concentrator.toml"):
        assert mode(path) == 0o600, path
    assert common_name(tls_dir / f"{cid}.pem") == cid
    checked = CliRunner().invoke(app, ["concentrator", "check", str(out / "concentrator.toml")])
    assert checked.exit_code == 0, checked.output

    # The concentrator runs from the written skeleton and announces itself over mutual TLS.
    config = load_config(out / "concentrator.toml")
    assert (config.broker.port, config.broker.username, config.broker.secret()) == (tls_mosquitto.tls_port, None,
                                                                                   None)
    births: list[ConcentratorStatus] = []

    async def on_status(msg: Message) -> None:
        births.append(ConcentratorStatus.model_validate_json(msg.payload))

    cloud = MqttSession(client_id=f"cloud-{uuid.uuid4().hex[:8]}", host=tls_mosquitto.server.host,
                        port=tls_mosquitto.server.port, **tls_mosquitto.server.credentials(CLOUD.username))
    async with cloud:
        await cloud.subscribe(topics.concentrator_status(cid), on_status)
        stop = asyncio.Event()
        task = asyncio.create_task(Concentrator.from_config(config).run(stop), name="provisioned-concentrator")
        try:
            await wait_for(lambda: any(s.state == "ONLINE" for s in births), timeout=20, what="its birth")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    # With the same files: its own subtree yes, another concentrator's no (PUBACK 0x87).
    old = TlsSettings(ca_file=str(tls_dir / "ca.pem"), cert_file=str(tmp_path / "old.pem"),
                      key_file=str(tmp_path / "old.key"))
    shutil.copy(tls_dir / f"{cid}.pem", old.cert_file)
    shutil.copy(tls_dir / f"{cid}.key", old.key_file)
    async with MqttSession(client_id=f"{cid}-probe", host="127.0.0.1", port=tls_mosquitto.tls_port,
                           tls=old) as conc:
        await conc.publish(f"concentrator/{cid}/smartMeterMessage/m-1/meterReading", b"own")
        with pytest.raises(NegativeAckError) as refused:
            await conc.publish("concentrator/conc-1/smartMeterMessage/m-1/meterReading", b"spoof")
        assert refused.value.reason_code == 0x87

    # Again: a new certificate, the config (with its meters) kept; the old certificate still
    # works until it expires (no revocation list yet: documented).
    again = await asyncio.to_thread(provision, base, cid, out, INSTALLER)
    assert again.exit_code == 0, again.output
    assert again.output.startswith("provisioned concentrator") and "kept" in again.output
    assert (tls_dir / f"{cid}.pem").read_bytes() != Path(old.cert_file).read_bytes()
    async with MqttSession(client_id=f"{cid}-old", host="127.0.0.1", port=tls_mosquitto.tls_port, tls=old) as conc:
        await conc.publish(f"concentrator/{cid}/status", b"old certificate still accepted")


@pytest.mark.parametrize("cid", [CLOUD.username, CLOUD.username.upper(), FLEET.username, "app.org-a"])
async def test_no_certificate_named_like_a_privileged_account(api, cid):
    base, url = api
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.post(f"/v1/installation/concentrators/{cid}/provision", headers=bearer(ADMIN))
    assert answer.status_code == 403, answer.text
    assert "privileged" in answer.json()["detail"] or "reserved" in answer.json()["detail"]
    async with Registry(url=url) as registry:
        assert not [d for d in await registry.list_devices(organisation=ADMIN) if d.identification == cid]


async def test_refusals_say_why(api, tmp_path):
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        created = await http.post("/v1/installation/concentrators/inst-1/provision", headers=bearer(INSTALLER))
        assert created.status_code == 200 and created.json()["registered"] is True
        assert created.json()["broker"]["host"] == "127.0.0.1"
        # Only an organisation with OWNER/INSTALLATION on it (or an administrator) may re-provision.
        other = await http.post("/v1/installation/concentrators/inst-1/provision", headers=bearer(OTHER))
        assert other.status_code == 403, other.text
        admin = await http.post("/v1/installation/concentrators/inst-1/provision", headers=bearer(ADMIN))
        assert admin.status_code == 200 and admin.json()["registered"] is False
        assert admin.json()["serial"] != created.json()["serial"]
        meter = await http.post("/v1/installation/concentrators/meter-x/provision", headers=bearer(ADMIN))
        assert meter.status_code == 409 and "not a concentrator" in meter.json()["detail"]
        bad = await http.post("/v1/installation/concentrators/a+b/provision", headers=bearer(ADMIN))
        assert bad.status_code == 422, bad.text
        anonymous = await http.post("/v1/installation/concentrators/inst-2/provision")
        assert anonymous.status_code == 401
        too_long = await http.post("/v1/installation/concentrators/inst-2/provision", headers=bearer(ADMIN),
                                   json={"validityDays": 5000})
        assert too_long.status_code == 422


async def test_an_api_without_a_ca_refuses_and_registers_nothing(tls_mosquitto, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    async with platform(tls_mosquitto, url, pki_dir=None) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN))
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            answer = await http.post("/v1/installation/concentrators/conc-9/provision", headers=bearer(ADMIN))
        assert answer.status_code == 409
        assert "GRIDWIRE_PKI_DIR" in answer.json()["detail"]
        result = await asyncio.to_thread(provision, base, "conc-9", tmp_path / "etc")
        assert result.exit_code == 1 and "GRIDWIRE_PKI_DIR" in result.output
        assert not (tmp_path / "etc").exists()
        async with Registry(url=url) as registry:
            assert await registry.list_devices(organisation=ADMIN) == []

"""Provisioning a concentrator end to end: the real platform API (uvicorn, SQLite registry, the
CA of a real Mosquitto's mutual-TLS listener with dynamic security and a CRL), the real
`gridwire concentrator provision` command (key made on the appliance, CSR, one-time claim), a
real concentrator connecting with what it wrote, and revocation (re-provisioning,
decommissioning) enforced by the broker."""

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
from broker.crl import revoked_serials
from broker.pki import common_name, make_key_and_request
from broker.schemas.status import ConcentratorStatus
from broker.session import ConnectError, Message, MqttSession, NegativeAckError, TlsSettings
from cloud.auth import issue_token
from cloud.settings import MqttSettings
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, PlatformRole, Protocol, Registry
from edge.concentrator import Concentrator
from edge.config import load_config
from gridwire.cli import app
from tests.cloud.platform.test_platform import platform_settings, serve_with_lifespan
from tests.fixtures.mosquitto import API, CLOUD, FLEET, TlsMosquitto
from tests.fixtures.waiting import wait_for

SECRET = "provisioning-test-secret-0123456789"
ADMIN, INSTALLER, OTHER = "operator", "installer", "other"
# A refused TLS handshake shows up as a missing CONNACK; keep that wait short.
REFUSED_WITHIN = 3.0


def bearer(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=SECRET, org=org)}"}


def api_login(broker: TlsMosquitto) -> MqttSettings:
    """The API's own broker login: an account of kind api may administer accounts."""
    return MqttSettings(host=broker.server.host, port=broker.server.port, username=API.username,
                        password=API.password)


@asynccontextmanager
async def platform(broker: TlsMosquitto, url: str, *, pki_dir: Path | None, **changes) -> AsyncIterator[str]:
    settings = platform_settings(
        broker.server, url, jwt_secret=SECRET, pki_dir=pki_dir, provision_broker_host="127.0.0.1",
        provision_broker_port=broker.tls_port, broker_reserved_names=f"{FLEET.username},{CLOUD.username}",
        crl_file=broker.crl_file, broker_pid_file=broker.server.pid_file, **{"mqtt": api_login(broker), **changes})
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


async def claim(base: str, cid: str, org: str = ADMIN) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.post(f"/v1/installation/concentrators/{cid}/claims", headers=bearer(org))
    assert answer.status_code == 201, answer.text
    return answer.json()["claim"]


def provision(base: str, token: str, out: Path):
    return CliRunner().invoke(app, ["concentrator", "provision", "--api", base, "--claim", token, "--out", str(out),
                                    "--data-dir", str(out / "data")])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def copy_tls(tls_dir: Path, to: Path) -> TlsSettings:
    """The appliance's files as they are now (a later provisioning replaces the certificate)."""
    to.mkdir()
    for name in ("ca.pem", "concentrator.pem", "concentrator.key"):
        shutil.copy(tls_dir / name, to / name)
    return TlsSettings(ca_file=str(to / "ca.pem"), cert_file=str(to / "concentrator.pem"),
                       key_file=str(to / "concentrator.key"))


async def assert_handshake_refused(broker: TlsMosquitto, tls: TlsSettings) -> None:
    session = MqttSession(client_id=f"refused-{uuid.uuid4().hex[:6]}", host="127.0.0.1", port=broker.tls_port,
                          tls=tls, connect_timeout=REFUSED_WITHIN)
    try:
        with pytest.raises(ConnectError):
            await session.connect()
        assert session.connections == 0
    finally:
        await session.close()


async def test_provisioned_concentrator_connects_over_mutual_tls_in_its_own_subtree_only(api, tls_mosquitto,
                                                                                        tmp_path):
    base, _ = api
    cid = f"field-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "etc"
    token = await claim(base, cid, INSTALLER)
    result = await asyncio.to_thread(provision, base, token, out)
    assert result.exit_code == 0, result.output
    assert f"provisioned concentrator {cid}" in result.output and "made here" in result.output
    tls_dir = out / "tls"
    for path in (tls_dir / "ca.pem", tls_dir / "concentrator.pem", tls_dir / "concentrator.key",
                 out / "concentrator.toml"):
        assert mode(path) == 0o600, path
    assert common_name(tls_dir / "concentrator.pem") == cid
    key = (tls_dir / "concentrator.key").read_bytes()
    assert key.decode() not in result.output
    checked = CliRunner().invoke(app, ["concentrator", "check", str(out / "concentrator.toml")])
    assert checked.exit_code == 0, checked.output

    # Safe to run again: the key is kept and the same claim gives the same certificate.
    again = await asyncio.to_thread(provision, base, token, out)
    assert again.exit_code == 0 and "kept" in again.output, again.output
    assert (tls_dir / "concentrator.key").read_bytes() == key

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
    old = copy_tls(tls_dir, tmp_path / "old")
    async with MqttSession(client_id=f"{cid}-probe", host="127.0.0.1", port=tls_mosquitto.tls_port,
                           tls=old) as conc:
        await conc.publish(f"concentrator/{cid}/smartMeterMessage/m-1/meterReading", b"own")
        with pytest.raises(NegativeAckError) as refused:
            await conc.publish("concentrator/conc-1/smartMeterMessage/m-1/meterReading", b"spoof")
        assert refused.value.reason_code == 0x87


async def test_reprovisioning_revokes_the_old_certificate_and_disconnects_it(api, tls_mosquitto, tmp_path):
    """Item 4: a new claim and a new key; the old certificate's session is cut at once and its
    next handshake fails on the CRL the broker re-read (SIGHUP); the new certificate works."""
    base, _ = api
    cid = f"reprov-{uuid.uuid4().hex[:6]}"
    first = await asyncio.to_thread(provision, base, await claim(base, cid), tmp_path / "first")
    assert first.exit_code == 0, first.output
    old = copy_tls(tmp_path / "first" / "tls", tmp_path / "old")
    old_serial = int(first.output.split("certificate ")[1].split(",")[0], 16)

    async with MqttSession(client_id=f"{cid}-old", host="127.0.0.1", port=tls_mosquitto.tls_port, tls=old,
                           session_expiry=0) as connected:
        await connected.publish(topics.concentrator_status(cid), b"old certificate, before")
        before = connected.connections
        second = await asyncio.to_thread(provision, base, await claim(base, cid), tmp_path / "second")
        assert second.exit_code == 0, second.output
        # Disconnected at once; its reconnection attempts fail the handshake.
        await wait_for(lambda: not connected.connected.is_set(), timeout=10, what="the old session cut")
        assert connected.connections == before
    assert old_serial in revoked_serials(tls_mosquitto.crl_file)
    await assert_handshake_refused(tls_mosquitto, old)
    new = copy_tls(tmp_path / "second" / "tls", tmp_path / "new")
    async with MqttSession(client_id=f"{cid}-new", host="127.0.0.1", port=tls_mosquitto.tls_port, tls=new,
                           session_expiry=0) as conc:
        await conc.publish(topics.concentrator_status(cid), b"new certificate")


async def test_decommissioning_revokes_and_disconnects_at_once(api, tls_mosquitto, tmp_path):
    base, _ = api
    cid = f"decom-{uuid.uuid4().hex[:6]}"
    done = await asyncio.to_thread(provision, base, await claim(base, cid), tmp_path / "etc")
    assert done.exit_code == 0, done.output
    tls = copy_tls(tmp_path / "etc" / "tls", tmp_path / "copy")
    async with MqttSession(client_id=f"{cid}-c", host="127.0.0.1", port=tls_mosquitto.tls_port, tls=tls,
                           session_expiry=0) as conc, httpx.AsyncClient(base_url=base, timeout=10) as http:
        await conc.publish(topics.concentrator_status(cid), b"before")
        answer = await http.post(f"/v1/installation/devices/{cid}/decommission", headers=bearer(ADMIN))
        assert answer.status_code == 200, answer.text
        await wait_for(lambda: not conc.connected.is_set(), timeout=10, what="the session cut")
        # A new claim for it is refused: it is decommissioned.
        refused = await http.post(f"/v1/installation/concentrators/{cid}/claims", headers=bearer(ADMIN))
        assert refused.status_code == 409, refused.text
    await assert_handshake_refused(tls_mosquitto, tls)


async def test_a_claim_is_for_one_key_one_concentrator_and_a_limited_time(api, tmp_path):
    base, url = api
    cid = f"once-{uuid.uuid4().hex[:6]}"
    token = await claim(base, cid)
    csr = make_key_and_request(tmp_path / "a.key")
    other_csr = make_key_and_request(tmp_path / "b.key")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        unknown = await http.post("/v1/installation/provision", json={"claim": "gwc_nope", "csr": csr})
        assert unknown.status_code == 403 and "unknown" in unknown.json()["detail"]
        bad_csr = await http.post("/v1/installation/provision", json={"claim": token, "csr": "not a csr"})
        assert bad_csr.status_code == 422, bad_csr.text
        first = await http.post("/v1/installation/provision", json={"claim": token, "csr": csr})
        assert first.status_code == 200, first.text
        assert "privateKey" not in first.json() and "PRIVATE" not in first.text
        same = await http.post("/v1/installation/provision", json={"claim": token, "csr": csr})
        assert same.json()["serial"] == first.json()["serial"]
        stolen = await http.post("/v1/installation/provision", json={"claim": token, "csr": other_csr})
        assert stolen.status_code == 409 and "used already" in stolen.json()["detail"]
        # The path that answered with a private key is gone.
        gone = await http.post(f"/v1/installation/concentrators/{cid}/provision", headers=bearer(ADMIN))
        assert gone.status_code in (404, 405)
        expired = await http.post(f"/v1/installation/concentrators/{cid}/claims", headers=bearer(ADMIN),
                                  json={"validHours": 0})
        assert expired.status_code == 422


@pytest.mark.parametrize("cid", [CLOUD.username, CLOUD.username.upper(), FLEET.username, API.username, "app.org-a"])
async def test_no_claim_named_like_a_privileged_account(api, cid):
    base, url = api
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.post(f"/v1/installation/concentrators/{cid}/claims", headers=bearer(ADMIN))
    assert answer.status_code == 403, answer.text
    assert "privileged" in answer.json()["detail"] or "reserved" in answer.json()["detail"]
    async with Registry(url=url) as registry:
        assert not [d for d in await registry.list_devices(organisation=ADMIN) if d.identification == cid]


async def test_refusals_say_why(api):
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        created = await http.post("/v1/installation/concentrators/inst-1/claims", headers=bearer(INSTALLER))
        assert created.status_code == 201 and created.json()["registered"] is True
        # Only an organisation with OWNER/INSTALLATION on it (or an administrator) may claim it.
        other = await http.post("/v1/installation/concentrators/inst-1/claims", headers=bearer(OTHER))
        assert other.status_code == 403, other.text
        admin = await http.post("/v1/installation/concentrators/inst-1/claims", headers=bearer(ADMIN))
        assert admin.status_code == 201 and admin.json()["registered"] is False
        meter = await http.post("/v1/installation/concentrators/meter-x/claims", headers=bearer(ADMIN))
        assert meter.status_code == 409 and "not a concentrator" in meter.json()["detail"]
        bad = await http.post("/v1/installation/concentrators/a+b/claims", headers=bearer(ADMIN))
        assert bad.status_code == 422, bad.text
        anonymous = await http.post("/v1/installation/concentrators/inst-2/claims")
        assert anonymous.status_code == 401


async def test_an_api_without_a_ca_refuses_and_registers_nothing(tls_mosquitto, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    async with platform(tls_mosquitto, url, pki_dir=None) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN))
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            answer = await http.post("/v1/installation/concentrators/conc-9/claims", headers=bearer(ADMIN))
        assert answer.status_code == 409
        assert "GRIDWIRE_PKI_DIR" in answer.json()["detail"]
        async with Registry(url=url) as registry:
            assert await registry.list_devices(organisation=ADMIN) == []


async def test_an_api_whose_broker_login_may_not_administer_accounts_refuses(tls_mosquitto, tmp_path):
    """Logged in as a cloud account (not api): the plugin refuses it, so claims are refused (503)."""
    from tests.cloud.platform.test_platform import cloud_login

    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    async with platform(tls_mosquitto, url, pki_dir=tls_mosquitto.pki_dir,
                        mqtt=cloud_login(tls_mosquitto.server)) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN))
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            answer = await http.post("/v1/installation/concentrators/conc-9/claims", headers=bearer(ADMIN))
        assert answer.status_code == 503 and "kind api" in answer.json()["detail"]
        async with Registry(url=url) as registry:
            assert await registry.list_devices(organisation=ADMIN) == []


async def _claim_state(url: str, cid: str) -> tuple[list[tuple], list[str], list[str]]:
    """The claims of ``cid`` as stored, the certificates issued for it, its broker accounts."""
    from sqlalchemy import select

    from cloud.accounts.models import BrokerAccountRow, ClientCertificateRow, ProvisioningClaimRow

    async with Registry(url=url) as registry, registry.engine.connect() as conn:
        claims = (await conn.execute(select(
            ProvisioningClaimRow.token_sha256, ProvisioningClaimRow.expires_at, ProvisioningClaimRow.redeemed_at,
            ProvisioningClaimRow.public_key_sha256, ProvisioningClaimRow.certificate_pem,
        ).where(ProvisioningClaimRow.concentrator_id == cid))).all()
        serials = (await conn.execute(select(ClientCertificateRow.serial)
                                      .where(ClientCertificateRow.concentrator_id == cid))).scalars().all()
        accounts = (await conn.execute(select(BrokerAccountRow.username)
                                       .where(BrokerAccountRow.subject == cid))).scalars().all()
    return [tuple(row) for row in claims], list(serials), list(accounts)


async def test_a_claim_used_after_it_expired_is_refused_and_changes_nothing(api, tls_mosquitto, tmp_path):
    base, url = api
    cid = f"late-{uuid.uuid4().hex[:6]}"
    token = await claim(base, cid)
    # The claim's hour passes: its expiry moved into the past in the registry the API reads.
    from datetime import timedelta

    from sqlalchemy import update

    from cloud.accounts.models import ProvisioningClaimRow
    from cloud.accounts.store import token_sha256
    from cloud.registry.models import utcnow

    async with Registry(url=url) as registry, registry.engine.begin() as conn:
        changed = await conn.execute(update(ProvisioningClaimRow)
                                     .where(ProvisioningClaimRow.token_sha256 == token_sha256(token))
                                     .values(expires_at=utcnow() - timedelta(seconds=1)))
        assert changed.rowcount == 1
    before = await _claim_state(url, cid)
    assert len(before[0]) == 1 and before[0][0][2:] == (None, None, None) and before[1:] == ([], [])
    crl_before = revoked_serials(tls_mosquitto.crl_file)

    csr = make_key_and_request(tmp_path / "late.key")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        late = await http.post("/v1/installation/provision", json={"claim": token, "csr": csr})
        assert late.status_code == 403, late.text
        assert late.json()["detail"] == "the provisioning claim has expired: ask for a new one"
        again = await http.post("/v1/installation/provision", json={"claim": token, "csr": csr})
        assert again.status_code == 403 and "expired" in again.json()["detail"]
    # The real appliance command with the same claim: refused, no certificate written.
    out = tmp_path / "appliance"
    refused = await asyncio.to_thread(provision, base, token, out)
    assert refused.exit_code != 0 and "expired" in refused.output, refused.output
    assert not list(out.rglob("concentrator.pem"))
    # Nothing issued, nothing redeemed, no broker account, the CRL as it was.
    assert await _claim_state(url, cid) == before
    assert revoked_serials(tls_mosquitto.crl_file) == crl_before
    # The concentrator never gets a login: a fresh claim (not the expired one) still works.
    fresh = await asyncio.to_thread(provision, base, await claim(base, cid), tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output
    assert list((tmp_path / "fresh").rglob("concentrator.pem"))  # where the refused one wrote none
    claims, serials, accounts = await _claim_state(url, cid)
    assert before[0][0] in claims  # the expired claim stays as it was, unredeemed
    assert len(claims) == 2 and len(serials) == 1 and accounts == [cid]

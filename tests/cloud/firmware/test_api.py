"""The firmware and campaign web API on the full platform app (real uvicorn, JWT, SQLite),
with the core and the campaign runner running as platform processes and a real concentrator
executor answering for the meters."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from cloud.platform import process_runner
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.settings import FirmwareOptions
from edge.commands import CommandExecutor
from firmware_ota.signing import generate_key, sign
from gridwire.cli import app as cli_app
from tests.cloud.core.harness import session_for
from tests.cloud.firmware.harness import (
    CONC,
    MODEL,
    ORG,
    ScriptedMeters,
    meter_ids,
    seed,
)
from tests.cloud.platform.test_platform import (
    SECRET,
    bearer,
    platform_settings,
    serve_with_lifespan,
)
from tests.firmware_ota.conftest import make_manifest
from tests.fixtures.mosquitto import CLOUD, MosquittoServer
from tests.fixtures.waiting import poll_until

OPS = "ops"


def upload_body(image: bytes, private: bytes, **manifest: Any) -> dict[str, Any]:
    signed = sign(make_manifest(image, **manifest), private)
    return {"signedManifest": signed.model_dump(mode="json", by_alias=True),
            "imageBase64": base64.b64encode(image).decode()}


async def test_firmware_upload_campaign_and_status(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    private, public = generate_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pem").write_bytes(public)
    url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    # A broker of its own: the platform's core keeps a durable member in the shared subscription
    # group after it stops, which would take a share of later tests' commands on a shared broker.
    broker = mosquitto
    settings = platform_settings(broker, url, firmware=FirmwareOptions(store_dir=tmp_path / "store",
                                                                       trusted_keys=str(tmp_path / "keys")))
    image = hashlib.sha256(b"api").digest() * 64
    stop = asyncio.Event()
    async with serve_with_lifespan(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=OPS, name="Ops",
                                                               role=PlatformRole.ADMIN))
            await seed(registry, meter_ids(4), feeders=2)
        admin, operator = bearer(OPS), bearer(ORG)

        # Upload: refused for non-admins, for every verification failure, then accepted once.
        body = upload_body(image, private, models=(MODEL,))
        assert (await http.post("/v1/firmware", json=body, headers=operator)).status_code == 403
        other_private, _ = generate_key()
        bad = {
            "unknown signing key": upload_body(image, other_private),
            "bad signature": {**body, "signedManifest": {
                **body["signedManifest"], "signature": upload_body(image + b"x", private)["signedManifest"]["signature"]}},
            "size mismatch": {**body, "imageBase64": base64.b64encode(image[:-1]).decode()},
            "sha256 mismatch": {**body, "imageBase64": base64.b64encode(b"\0" + image[1:]).decode()},
            "not valid base64": {**body, "imageBase64": "***"},
        }
        for reason, payload in bad.items():
            answer = await http.post("/v1/firmware", json=payload, headers=admin)
            assert answer.status_code == 400 and reason in answer.json()["detail"], (reason, answer.text)
        created = await http.post("/v1/firmware", json=body, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["firmwareId"] == "sim-meter-2.1.0" and created.json()["uploadedBy"] == OPS
        assert (await http.post("/v1/firmware", json=body, headers=admin)).status_code == 201  # same again: fine
        clash = await http.post("/v1/firmware", json=upload_body(image + b"!", private, models=(MODEL,)),
                                headers=admin)
        assert clash.status_code == 409 and "different image" in clash.json()["detail"]
        assert (tmp_path / "store" / "sim-meter-2.1.0" / "image.bin").read_bytes() == image
        # The CLI's upload, of a second firmware (its HTTP call is blocking: off the event loop).
        (tmp_path / "fw2.bin").write_bytes(image[:100])
        (tmp_path / "fw2.json").write_bytes(sign(make_manifest(image[:100], firmware_id="sim-meter-2.2.0",
                                                               version="2.2.0"), private).to_wire())
        cli_args = ["firmware", "upload", "--image", str(tmp_path / "fw2.bin"), "--manifest",
                    str(tmp_path / "fw2.json"), "--api", base, "--token", admin["Authorization"].split()[1]]
        uploaded = await asyncio.to_thread(CliRunner().invoke, cli_app, cli_args)
        assert uploaded.exit_code == 0, uploaded.output
        refused = await asyncio.to_thread(CliRunner().invoke, cli_app, [*cli_args[:-1], "not-a-token"])
        assert refused.exit_code == 1 and "401" in refused.output
        listed = (await http.get("/v1/firmware", headers=operator)).json()
        assert [f["firmwareId"] for f in listed] == ["sim-meter-2.1.0", "sim-meter-2.2.0"]
        assert (await http.get("/v1/firmware/nope", headers=operator)).status_code == 404

        # Campaign creation refusals.
        spec = {"name": "spring", "firmwareId": "sim-meter-2.1.0", "devices": meter_ids(4), "canarySize": 1}
        missing = await http.post("/v1/campaigns", json={**spec, "devices": ["m000", "ghost"]}, headers=operator)
        assert missing.status_code == 422
        assert missing.json()["detail"]["devices"] == {"ghost": "device is not registered"}
        forbidden = await http.post("/v1/campaigns", json=spec, headers=admin)
        assert forbidden.status_code == 403 and "FIRMWARE" in forbidden.json()["detail"]["devices"]["m000"]
        assert (await http.post("/v1/campaigns", json={**spec, "firmwareId": "nope"},
                                headers=operator)).status_code == 404
        assert (await http.post("/v1/campaigns", json={**spec, "devices": []}, headers=operator)).status_code == 422

        # A campaign over every device of the organisation, run by the platform's processes.
        made = await http.post("/v1/campaigns", json={**spec, "devices": [], "allDevicesOf": ORG}, headers=operator)
        assert made.status_code == 201, made.text
        campaign = made.json()
        assert campaign["state"] == "CREATED" and campaign["targetCount"] == 4 and campaign["waveCount"] == 3
        assert (await http.post(f"/v1/campaigns/{campaign['id']}/pause", headers=operator)).status_code == 409
        assert (await http.get(f"/v1/campaigns/{campaign['id']}", headers=bearer("stranger"))).status_code == 403

        meters = ScriptedMeters()
        meters.failures["m003"] = "VERIFY_FAILED"
        async with session_for(broker, CONC) as conc_session:
            executor = CommandExecutor(session=conc_session, concentrator_id=CONC)
            for meter in meter_ids(4):
                executor.register(meter, {"update_firmware": meters.handler(meter)})
            await executor.start()
            core_ready = asyncio.Event()
            tasks = [asyncio.create_task(process_runner("core", settings, ready=core_ready)(stop), name="core")]
            await asyncio.wait_for(core_ready.wait(), 20)
            tasks.append(asyncio.create_task(process_runner("campaigns", settings)(stop), name="campaigns"))
            started = await http.post(f"/v1/campaigns/{campaign['id']}/start", headers=operator)
            assert started.status_code == 200 and started.json()["state"] == "RUNNING"
            async def fetch_status() -> dict:
                return (await http.get(f"/v1/campaigns/{campaign['id']}/status", headers=operator)).json()

            status = await poll_until(fetch_status, lambda s: not s["campaign"]["active"], timeout=30, interval=0.1,
                                      what="the campaign to end")
            stop.set()
            await asyncio.gather(*tasks)
        assert status["campaign"]["state"] == "FAILED_THRESHOLD"
        assert status["campaign"]["version"] == "2.1.0" and status["campaign"]["targetCount"] == 4
        assert status["counts"] == {"PENDING": 0, "IN_FLIGHT": 0, "SUCCEEDED": 3, "FAILED": 1, "CANCELLED": 0}
        assert [(f["device"], f["failureCode"]) for f in status["failed"]] == [("m003", "VERIFY_FAILED")]
        assert [w["groups"] for w in status["waves"]] == [["F0"], ["F0"], ["F1"]]
        targets = f"/v1/campaigns/{campaign['id']}/targets"
        failed = (await http.get(targets, params={"state": "FAILED"}, headers=operator)).json()
        assert [(t["device"], t["state"], t["failureCode"]) for t in failed] == [("m003", "FAILED", "VERIFY_FAILED")]
        pages = [(await http.get(targets, params={"page": n, "pageSize": 3}, headers=operator)).json()
                 for n in range(3)]
        assert [len(p) for p in pages] == [3, 1, 0]
        assert sorted(t["device"] for p in pages for t in p) == meter_ids(4)
        assert (await http.get(targets, params={"pageSize": 0}, headers=operator)).status_code == 422
        assert (await http.get("/v1/campaigns/nope/targets", headers=operator)).status_code == 404
        assert (await http.get("/v1/campaigns/nope/status", headers=operator)).status_code == 404
        assert (await http.get(targets, headers=bearer("stranger"))).status_code == 403
        assert [c["id"] for c in (await http.get("/v1/campaigns", headers=operator)).json()] == [campaign["id"]]
        assert (await http.get(f"/v1/campaigns/{campaign['id']}/status", headers=admin)).status_code == 200
        device = (await http.get("/v1/installation/devices/m001", headers=operator)).json()
        assert device["firmwareVersion"] == "2.1.0"

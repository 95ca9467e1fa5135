"""`gridwire cloud firmware-server` as a real process: settings from GRIDWIRE_* variables, serving a store."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from broker.schemas.firmware import SignedManifest
from broker.session import MqttSession
from firmware_ota.downloader import Downloader
from firmware_ota.store import FirmwareStore
from gridwire.procs import ManagedProcess
from gridwire.services import LocalMosquitto


async def test_firmware_server_process_serves_a_download(mosquitto: LocalMosquitto, tmp_path: Path, image: bytes,
                                                         signed: SignedManifest, trusted: dict[str, bytes]) -> None:
    store = FirmwareStore(root=tmp_path / "store")
    store.add(image=image, signed=signed, trusted=trusted)
    cloud = mosquitto.credentials("gridwire-cloud")
    proc = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "firmware-server"],
                          log=tmp_path / "firmware-server.log",
                          env={"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
                               "GRIDWIRE_MQTT_USERNAME": cloud["username"], "GRIDWIRE_MQTT_PASSWORD": cloud["password"],
                               "GRIDWIRE_FIRMWARE_STORE_DIR": str(store.root)})
    proc.start()
    try:
        async with MqttSession(client_id=f"conc-1-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                               session_expiry=0, **mosquitto.credentials("conc-1")) as conc:
            # Requests sent before the server subscribed are lost (non-durable test session) and retried.
            downloader = Downloader(session=conc, concentrator_id="conc-1", cache_dir=tmp_path / "cache",
                                    trusted=trusted, chunk_size=4096, request_timeout=1.0, max_attempts=30)
            await downloader.start()
            path = await downloader.fetch(signed)
        assert path.read_bytes() == image
    finally:
        proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0
    assert "chunks" in (tmp_path / "firmware-server.log").read_text()

"""OTA rig: a signed simulated image in a FirmwareStore, a ChunkServer on the real broker (with a
gate to hold it mid-download), a spy on the request topic, DLMS simulators, concentrator configs,
and a minimal core that sends generic commands and awaits their answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import topics
from broker.schemas.command import CommandResponse, GenericCommand
from broker.schemas.firmware import FirmwareManifest, SignedManifest
from broker.session import Message, MqttSession, publish_properties
from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode, ServerSecurity
from edge.dlms.sim_firmware import SimFirmware, build_sim_image
from firmware_ota.chunk_server import ChunkServer
from firmware_ota.signing import generate_key, key_id_of, sign
from firmware_ota.store import FirmwareStore
from gridwire.services import LocalMosquitto
from tests.fixtures.waiting import wait_for  # noqa: F401 - re-exported for the tests here

CID = "conc-1"
MODEL = "SIM-DLMS"
PASSWORD = "lls-ota-pw-1"
BLOCK_KEY = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
AUTH_KEY = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
# 96 KiB of payload behind the simulated header: 97 blocks of 1 KiB at the meter.
IMAGE = build_sim_image("2.1.0", bytes((i * 31 + 7) % 253 for i in range(96 * 1024)))
RESPONSES = topics.concentrator_response(CID)


def manifest_for(image: bytes, *, firmware_id: str = "sim-meter-2.1.0", version: str = "2.1.0",
                 models: tuple[str, ...] = (MODEL,)) -> FirmwareManifest:
    return FirmwareManifest(firmware_id=firmware_id, version=version, device_models=list(models),
                            image_identifier=f"IMG-{version}", size=len(image),
                            sha256=hashlib.sha256(image).hexdigest(),
                            created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


@dataclass
class Keys:
    private: bytes
    public: bytes
    directory: Path

    @property
    def trusted(self) -> dict[str, bytes]:
        return {key_id_of(self.public): self.public}


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    private, public = generate_key()
    directory = tmp_path / "trusted-keys"
    directory.mkdir()
    (directory / "release.pem").write_bytes(public)
    return Keys(private=private, public=public, directory=directory)


@pytest.fixture
def store(tmp_path: Path) -> FirmwareStore:
    return FirmwareStore(root=tmp_path / "firmware-store")


@pytest.fixture
def signed(store: FirmwareStore, keys: Keys) -> SignedManifest:
    signed = sign(manifest_for(IMAGE), keys.private)
    store.add(image=IMAGE, signed=signed, trusted=keys.trusted)
    return signed


class GatedChunkServer(ChunkServer):
    """The real ChunkServer, which a test can hold after ``hold_after`` chunks until ``gate`` is set."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.hold_after: int | None = None
        self.gate = asyncio.Event()

    async def handle(self, message: Message) -> None:
        if self.hold_after is not None and self.chunks_served >= self.hold_after:
            await self.gate.wait()
        await super().handle(message)


@dataclass
class Cloud:
    """The cloud side of one test: chunk server, a spy on requests, and a minimal core."""

    session: MqttSession
    server: GatedChunkServer
    requests: list[tuple[str, int]] = field(default_factory=list)
    pending: dict[bytes, asyncio.Future[CommandResponse]] = field(default_factory=dict)
    births: int = 0

    async def on_status(self, message: Message) -> None:
        if message.payload and json.loads(message.payload).get("state") == "ONLINE":
            self.births += 1

    async def online(self, *, births: int = 1) -> None:
        """Wait for the concentrator's ONLINE birth: it is published after it subscribed to commands."""
        await wait_for(lambda: self.births >= births, what="the concentrator's ONLINE status")

    async def spy(self, message: Message) -> None:
        try:
            body = json.loads(message.payload)
            self.requests.append((body["firmwareId"], int(body["offset"])))
        except (ValueError, KeyError, TypeError):
            self.requests.append(("?", -1))

    async def on_response(self, message: Message) -> None:
        future = self.pending.pop(message.correlation_data or b"", None)
        if future is not None and not future.done():
            future.set_result(CommandResponse.model_validate_json(message.payload))

    async def send(self, device: str, name: str, parameters: dict[str, object]) -> asyncio.Future[CommandResponse]:
        """Publish a generic command to the concentrator; a future of its response."""
        command = GenericCommand(deviceId=device, name=name, parameters=parameters, issuedAt=datetime.now(UTC))
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        await self.session.publish(topics.concentrator_command(CID), command.to_wire(), qos=1,
                                   properties=publish_properties(correlation_data=correlation,
                                                                 response_topic=RESPONSES, message_expiry=300))
        return future

    async def run(self, device: str, name: str, parameters: dict[str, object], *,
                  timeout: float = 30.0) -> CommandResponse:
        return await asyncio.wait_for(await self.send(device, name, parameters), timeout)


@pytest.fixture
async def cloud(mosquitto: LocalMosquitto, store: FirmwareStore) -> AsyncIterator[Cloud]:
    session = MqttSession(client_id=f"cloud-{uuid.uuid4().hex[:8]}", host=mosquitto.host, port=mosquitto.port,
                          session_expiry=600, **mosquitto.credentials("gridwire-cloud"))
    await session.connect()
    server = GatedChunkServer(session=session, store=store)
    rig = Cloud(session=session, server=server)
    await server.start()
    # The spy needs a session of its own: a session routes a message to its first matching filter.
    spy = MqttSession(client_id=f"spy-{uuid.uuid4().hex[:8]}", host=mosquitto.host, port=mosquitto.port,
                      session_expiry=600, **mosquitto.credentials("gridwire-cloud"))
    await spy.connect()
    await spy.subscribe("concentrator/+/firmware/request", rig.spy)
    await spy.subscribe(RESPONSES, rig.on_response)
    await spy.subscribe(topics.concentrator_status(CID), rig.on_status)
    yield rig
    server.gate.set()
    await spy.close()
    await session.close()


def simulator(mode: SecurityMode, *, name: str, firmware: SimFirmware | None = None) -> DlmsMeterSimulator:
    security = ServerSecurity(mode=mode, password=PASSWORD.encode(), block_cipher_key=bytes.fromhex(BLOCK_KEY),
                              authentication_key=bytes.fromhex(AUTH_KEY), system_title=b"GRWSIM01")
    model = MeterModel(serial=name, firmware=firmware or SimFirmware(block_size=1024))
    return DlmsMeterSimulator(model=model, security=security, name=name)


def dlms_entry(meter_id: str, sim: DlmsMeterSimulator, *, model: str = MODEL, interval: float = 3600.0) -> str:
    mode = sim.security.mode
    lines = ['[[meters]]', 'protocol = "dlms"', f'meter_id = "{meter_id}"', 'host = "127.0.0.1"',
             f'port = {sim.port}', f'security = "{mode.value}"', 'profile = "smr-5"', f'model = "{model}"',
             f'interval_s = {interval}', 'timeout_s = 3']
    if mode is SecurityMode.LLS:
        lines.append(f'password = "{PASSWORD}"')
    if mode is SecurityMode.HLS_GMAC:
        lines += [f'block_cipher_key = "{BLOCK_KEY}"', f'authentication_key = "{AUTH_KEY}"']
    return "\n".join(lines) + "\n"


def write_config(directory: Path, *, broker: LocalMosquitto, keys: Keys, meters: list[str],
                 chunk_size: int = 8192, window: int = 2, request_timeout: float = 2.0, batch: int = 1) -> Path:
    # One chunk per request by default: GatedChunkServer holds after an exact number of chunks.
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "concentrator.toml"
    path.write_text(
        f'concentrator_id = "{CID}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        'invocation_counters = "counters.sqlite"\nstatus_interval = 5\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{CID}"\npassword = "conc-1-pw"\n\n'
        '[backfill]\nenabled = false\n\n'
        f'[firmware]\ntrusted_keys = ["{keys.directory}"]\nchunk_size = {chunk_size}\nwindow = {window}\n'
        f'batch = {batch}\nrequest_timeout = {request_timeout}\nmax_attempts = 20\n\n' + "\n".join(meters))
    return path


def update(signed: SignedManifest) -> dict[str, object]:
    """update_firmware's parameters."""
    return {"signedManifest": json.loads(signed.to_wire())}




def chunks_on_disk(cache: Path, sha256: str) -> set[int]:
    """Chunk indexes a (possibly dead) concentrator recorded as written, from its .chunks file."""
    record = cache / f"{sha256}.chunks"
    if not record.exists():
        return set()
    raw = record.read_bytes()
    return {int.from_bytes(raw[i:i + 4], "big") for i in range(4, len(raw) - 3, 4)}

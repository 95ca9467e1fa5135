"""Bench: one firmware image to N DLMS meters behind one concentrator, with the rates it is made of.

Run: ``.venv/bin/python bench/firmware.py [--size-kib 256] [--meters 8] [--chunk-kib 32] [--window 4]``.

Starts Mosquitto (the project's config) in a temporary directory and, in this process, the
firmware ChunkServer, a concentrator (``edge.concentrator.Concentrator``) and N DLMS meter
simulators over loopback TCP (half LLS, half HLS-GMAC). Prints, from the same run:

- (a) raw broker: bytes/s of QoS 1 messages of the chunk size from one session to another;
- (b) MQTT download: bytes/s of one image through ChunkServer -> Downloader (signature check,
  chunk file writes with fsync, whole-image sha256), and its ratio to (a);
- (c) DLMS block transfer to one meter alone, LLS and HLS-GMAC: blocks/s, KiB/s and CPU per
  block (the meter's frame handling apart from the rest), with the blocks built by hand
  (edge.dlms.image_block) and, as the baseline, by gurux on both sides; HLS-GMAC again with
  gurux-dlms's pure-Python AES-GCM, the baseline of edge.dlms.native_gcm;
- (d) end to end: ``update_firmware`` to all N meters at once through the broker (one download,
  N transfers in parallel), the wall time and chunk requests the server saw.
Everything shares one event loop on one core, so the figures are the combined cost of both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import importlib
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from broker import topics
from broker.mosquitto_conf import Account
from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.schemas.firmware import FirmwareManifest
from broker.session import Message, MqttSession, publish_properties
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import (
    DlmsMeterAdapter,
    DlmsMeterConfig,
    DlmsMeterSimulator,
    InvocationCounterStore,
    MeterModel,
    SecurityMode,
    ServerSecurity,
)
from edge.dlms.block_sender import BlockSender
from edge.dlms.cosem_server import CosemServer
from edge.dlms.sim_firmware import SimFirmware, build_sim_image
from firmware_ota.chunk_server import ChunkServer
from firmware_ota.downloader import Downloader
from firmware_ota.signing import generate_key, key_id_of, sign
from firmware_ota.store import FirmwareStore
from gridwire.procs import free_port
from gridwire.services import LocalMosquitto

CID = "conc-1"
PASSWORD = "bench-pw-1"
KEY_A, KEY_B = bytes(range(16)), bytes(range(16, 32))
ACCOUNTS = [Account(username="gridwire-cloud", password="cloud-bench-pw", role="cloud"),
            Account(username=CID, password="conc-bench-pw", role="concentrator")]


def session(broker: LocalMosquitto, user: str) -> MqttSession:
    return MqttSession(client_id=f"{user}-{uuid.uuid4().hex[:6]}", host=broker.host, port=broker.port,
                       session_expiry=0, max_inflight=100, **broker.credentials(user))


async def raw_broker(broker: LocalMosquitto, *, size: int, count: int) -> float:
    done = asyncio.Event()
    got = 0

    async def on_message(_message: Message) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    async with session(broker, "gridwire-cloud") as sub, session(broker, "gridwire-cloud") as pub:
        await sub.subscribe("bench/raw", on_message)
        payload = os.urandom(size)
        started = time.perf_counter()
        await asyncio.gather(*(pub.publish("bench/raw", payload, qos=1) for _ in range(count)))
        await done.wait()
        return size * count / (time.perf_counter() - started)


def security(mode: SecurityMode) -> ServerSecurity:
    return ServerSecurity(mode=mode, password=PASSWORD.encode(), block_cipher_key=KEY_A, authentication_key=KEY_B)


def meter_entry(meter_id: str, sim: DlmsMeterSimulator) -> str:
    mode = sim.security.mode
    extra = (f'password = "{PASSWORD}"' if mode is SecurityMode.LLS
             else f'block_cipher_key = "{KEY_A.hex()}"\nauthentication_key = "{KEY_B.hex()}"')
    return (f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{meter_id}"\nhost = "127.0.0.1"\nport = {sim.port}\n'
            f'security = "{mode.value}"\nprofile = "smr-5"\nmodel = "SIM-DLMS"\ninterval_s = 3600\ntimeout_s = 10\n'
            f'{extra}\n')


METER_CPU = [0.0]


def _timed_handle_frame(server: CosemServer, frame: bytes) -> bytes | None:
    started = time.process_time()
    try:
        return _HANDLE_FRAME(server, frame)
    finally:
        METER_CPU[0] += time.process_time() - started


_HANDLE_FRAME = CosemServer.handle_frame
CosemServer.handle_frame = _timed_handle_frame  # type: ignore[method-assign]


async def dlms_alone(mode: SecurityMode, image: bytes, work: Path, block_size: int) -> tuple[float, int, float, float]:
    """(seconds, blocks, CPU s in the meter's frame handling, CPU s of the rest) of one transfer alone."""
    async with DlmsMeterSimulator(model=MeterModel(firmware=SimFirmware(block_size=block_size)),
                                  security=security(mode)) as sim:
        config = DlmsMeterConfig(meter_id=f"alone-{mode}", host="127.0.0.1", port=sim.port, security=mode,
                                 password=SecretStr(PASSWORD), block_cipher_key=SecretStr(KEY_A.hex()),
                                 authentication_key=SecretStr(KEY_B.hex()), timeout_s=10)
        adapter = DlmsMeterAdapter(config=config, counters=InvocationCounterStore(work / f"counters-{mode}.sqlite"))
        METER_CPU[0] = 0.0
        cpu = time.process_time()
        report = await adapter.update_firmware(identifier=b"bench", image=image)
        cpu = time.process_time() - cpu
        return report.seconds, report.blocks_total, METER_CPU[0], cpu - METER_CPU[0]


@contextlib.contextmanager
def gurux_blocks():
    """Image blocks built and answered by gurux on both sides (before edge.dlms.image_block), for a baseline."""
    for_link, answer = BlockSender.for_link, CosemServer._image_block
    BlockSender.for_link = classmethod(lambda cls, *args, **kwargs: None)  # type: ignore[method-assign,assignment]
    CosemServer._image_block = lambda self, frame, apdu: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        BlockSender.for_link, CosemServer._image_block = for_link, answer  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    size, chunk = args.size_kib * 1024, args.chunk_kib * 1024
    image = build_sim_image("9.9.9", os.urandom(size - 10))
    with tempfile.TemporaryDirectory(prefix="gw-fw-bench-") as tmp:
        work = Path(tmp)
        broker = LocalMosquitto(directory=work / "mosquitto", port=free_port(), accounts=ACCOUNTS)
        broker.start()
        try:
            await run(args, broker, work, image, chunk)
        finally:
            broker.stop()


async def run(args: argparse.Namespace, broker: LocalMosquitto, work: Path, image: bytes, chunk: int) -> None:
    private, public = generate_key()
    (work / "keys").mkdir()
    (work / "keys" / "release.pem").write_bytes(public)
    trusted = {key_id_of(public): public}
    manifest = FirmwareManifest(firmware_id="bench-9.9.9", version="9.9.9", device_models=["SIM-DLMS"],
                                image_identifier="BENCH-9.9.9", size=len(image),
                                sha256=hashlib.sha256(image).hexdigest(), created=datetime.now(UTC).replace(microsecond=0))
    signed = sign(manifest, private)
    store = FirmwareStore(root=work / "store")
    store.add(image=image, signed=signed, trusted=trusted)
    print(f"image {len(image) / 1024:.0f} KiB, chunk {chunk // 1024} KiB, window {args.window}, "
          f"{args.meters} meters, DLMS block {args.block} B; user {getpass.getuser()}, load {os.getloadavg()[0]:.2f}")

    raw = await raw_broker(broker, size=chunk, count=max(50, 4 * len(image) // chunk))
    print(f"(a) raw broker       {raw / 1e6:8.2f} MB/s  (QoS 1, {chunk // 1024} KiB messages)")

    async with session(broker, "gridwire-cloud") as cloud, session(broker, CID) as conc:
        server = ChunkServer(session=cloud, store=store)
        await server.start()
        downloader = Downloader(session=conc, concentrator_id=CID, cache_dir=work / "dl-cache", trusted=trusted,
                                chunk_size=chunk, window=args.window, batch=args.batch)
        await downloader.start()
        started = time.perf_counter()
        await downloader.fetch(signed)
        rate = len(image) / (time.perf_counter() - started)
    print(f"(b) MQTT download    {rate / 1e6:8.2f} MB/s  ({rate / raw:.2f} of raw)")

    for mode in (SecurityMode.LLS, SecurityMode.HLS_GMAC):
        for label, path in (("blocks by hand", contextlib.nullcontext), ("blocks by gurux", gurux_blocks)):
            with path():
                seconds, blocks, meter, rest = await dlms_alone(mode, image, work, args.block)
            print(f"(c) DLMS {mode.value:9s} {label:15s} {blocks / seconds:8.0f} blocks/s "
                  f"{len(image) / 1024 / seconds:7.1f} KiB/s ({seconds:.2f} s for the image); CPU per block "
                  f"{(meter + rest) / blocks * 1e3:.3f} ms: meter's frame handling {meter / blocks * 1e3:.3f} ms, "
                  f"the rest (concentrator side, both event loops) {rest / blocks * 1e3:.3f} ms")
        if mode is SecurityMode.HLS_GMAC:
            native_rate = blocks / seconds
            with pure_python_gcm(), gurux_blocks():
                seconds, blocks, _, _ = await dlms_alone(mode, image, work, args.block)
            print(f"    HLS-GMAC by gurux with its pure-Python AES-GCM (the first baseline): {blocks / seconds:8.0f} "
                  f"blocks/s; native GCM (gurux blocks) is {native_rate / (blocks / seconds):.1f}x that")

    await end_to_end(args, broker, work, signed, store, chunk)


@contextlib.contextmanager
def pure_python_gcm():
    """gurux-dlms's own pure-Python GCM stream in place of edge.dlms.native_gcm, for a baseline."""
    module = importlib.import_module("gurux_dlms.GXDLMSChippering")
    native = module.GXDLMSChipperingStream
    module.GXDLMSChipperingStream = importlib.import_module("gurux_dlms.GXDLMSChipperingStream").GXDLMSChipperingStream
    try:
        yield
    finally:
        module.GXDLMSChipperingStream = native


async def end_to_end(args: argparse.Namespace, broker: LocalMosquitto, work: Path, signed, store: FirmwareStore,
                     chunk: int) -> None:
    modes = [SecurityMode.LLS if n % 2 == 0 else SecurityMode.HLS_GMAC for n in range(args.meters)]
    sims = [DlmsMeterSimulator(model=MeterModel(firmware=SimFirmware(block_size=args.block)), security=security(m),
                               name=f"m-{n}") for n, m in enumerate(modes)]
    for sim in sims:
        await sim.start()
    config = work / "conc" / "concentrator.toml"
    config.parent.mkdir()
    config.write_text(
        f'concentrator_id = "{CID}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        f'invocation_counters = "counters.sqlite"\n\n[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'username = "{CID}"\npassword = "conc-bench-pw"\n\n[backfill]\nenabled = false\n\n'
        f'[firmware]\ntrusted_keys = ["{work / "keys"}"]\nchunk_size = {chunk}\nwindow = {args.window}\n\n'
        + "\n".join(meter_entry(sim.name, sim) for sim in sims))
    conc = Concentrator.from_config(load_config(config))
    stop = asyncio.Event()
    task = asyncio.create_task(conc.run(stop))
    futures: dict[bytes, asyncio.Future[CommandResponse]] = {}

    async def on_response(message: Message) -> None:
        future = futures.pop(message.correlation_data or b"", None)
        if future is not None:
            future.set_result(CommandResponse.model_validate_json(message.payload))

    try:
        async with session(broker, "gridwire-cloud") as cloud:
            server = ChunkServer(session=cloud, store=store)
            await server.start()
            await cloud.subscribe(topics.concentrator_response(CID), on_response)
            online = asyncio.Event()

            async def on_status(message: Message) -> None:
                if json.loads(message.payload).get("state") == "ONLINE":
                    online.set()

            # The birth is published after the concentrator subscribed to its commands.
            await cloud.subscribe(topics.concentrator_status(CID), on_status)
            await asyncio.wait_for(online.wait(), 30)
            started = time.perf_counter()
            for sim in sims:
                correlation = uuid.uuid4().bytes
                futures[correlation] = asyncio.get_running_loop().create_future()
                command = GenericCommand(deviceId=sim.name, name="update_firmware",
                                         parameters={"signedManifest": json.loads(signed.to_wire())},
                                         issuedAt=datetime.now(UTC))
                await cloud.publish(topics.concentrator_command(CID), command.to_wire(),
                                    properties=publish_properties(correlation_data=correlation,
                                                                  response_topic=topics.concentrator_response(CID)))
            answers = await asyncio.gather(*futures.values())
            elapsed = time.perf_counter() - started
        ok = sum(a.status is CommandStatus.SUCCEEDED for a in answers)
        print(f"(d) end to end       {elapsed:8.2f} s for {len(sims)} meters ({ok} succeeded), "
              f"{server.chunks_served} chunk requests served (one download), "
              f"{len(sims) * signed.manifest.size / 1024 / elapsed:.1f} KiB/s to meters in total")
    finally:
        stop.set()
        await task
        for sim in sims:
            await sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-kib", type=int, default=256)
    parser.add_argument("--meters", type=int, default=8)
    parser.add_argument("--chunk-kib", type=int, default=32)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="chunks per download request")
    parser.add_argument("--block", type=int, default=512, help="the simulated meters' image_block_size")
    asyncio.run(main(parser.parse_args()))

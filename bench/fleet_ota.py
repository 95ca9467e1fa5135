"""Bench: fleet OTA (issue 12 item 5), a signed image through a campaign to DLMS meters behind concentrators.

Run: ``.venv/bin/python -m bench.fleet_ota [--meters 1000] [--concentrators 10] [--size-kib 1024]``.

Starts Mosquitto (the project's config) and, as separate processes, per concentrator one process
hosting its simulated DLMS meters (``DlmsMeterSimulator``, HLS-GMAC by default) and one running
``edge.concentrator.Concentrator`` from a config naming them. In this process: a fresh SQLite
registry with the fleet (each concentrator its own substation, its meters on ``--feeders-per``
feeders), the firmware catalogue and store, the core (``CoreDispatcher``), the firmware
``ChunkServer`` and the ``CampaignRunner``, as ``bench/campaign.py`` runs them. One campaign,
waves cut by substation (a canary, then ``--groups-per-wave`` substations at a time), takes
every meter to the new version. Prints:

- (a) raw broker and (b) the MQTT chunk download of the same image into a concentrator's cache
  (signature check, chunk writes synced in batches, whole-image sha256), and their ratio, as
  ``bench/firmware.py`` does, in the same run and on the same broker;
- the campaign: each wave's start, the wall time, the outcome per meter, commands per meter,
  the versions the campaign recorded, and the ChunkServer's counters (downloads = bytes served
  over the image size, per concentrator);
- the phases, from the concentrator processes' own clocks: download (per concentrator), DLMS
  block transfer, verify and activate (per meter: the span from the first start to the last
  end across the fleet, and the mean per meter), and the DLMS blocks/s of the whole fleet;
- the load average before and after, and the CPU seconds of every process (this one, the
  broker, each meter host and each concentrator).

``--profile`` runs (b) under cProfile and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bench.firmware import KEY_A, KEY_B, PASSWORD, security
from broker import topics
from broker.mosquitto_conf import Account
from broker.schemas.firmware import FirmwareManifest, SignedManifest
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.core.models import CommandRow
from cloud.deadletters import DeadLetterStore
from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate
from cloud.migrations import migrate
from cloud.registry import FunctionGroup, OrganisationCreate, Registry
from cloud.registry.models import Device, DeviceAuthorisation, Organisation, utcnow
from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode
from edge.dlms.sim_firmware import SimFirmware, build_sim_image
from firmware_ota.campaign_plan import Grouping
from firmware_ota.chunk_server import ChunkServer
from firmware_ota.downloader import Downloader
from firmware_ota.signing import generate_key, key_id_of, sign
from firmware_ota.store import FirmwareStore
from gridwire.procs import free_port
from gridwire.services import LocalMosquitto

ORG = "utility"
MODEL = "SIM-DLMS"
VERSION = "3.1.0"
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")


def conc_id(c: int) -> str:
    return f"conc-{c:02d}"


def conc_account(c: int) -> Account:
    return Account(username=conc_id(c), password=f"{conc_id(c)}-pw", role="concentrator")


def meters_of(c: int, args: argparse.Namespace) -> list[str]:
    """Concentrator ``c``'s meters (1-based c): every ``concentrators``-th meter of the fleet."""
    return [f"meter-{n:05d}" for n in range(c - 1, args.meters, args.concentrators)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of_pid(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stdin_closed() -> None:
    """Returns when the parent closes this process's stdin (its signal to stop)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)


# --- child: the meters of one concentrator ---------------------------------------------------
async def host_meters(args: argparse.Namespace) -> None:
    mode = SecurityMode(args.security)
    sims = [DlmsMeterSimulator(model=MeterModel(firmware=SimFirmware(block_size=args.block)), security=security(mode),
                               name=f"m{n}") for n in range(args.count)]
    for sim in sims:
        await sim.start()
    print(json.dumps({"ports": [sim.port for sim in sims]}), flush=True)
    await stdin_closed()
    versions = Counter(sim.model.firmware.version for sim in sims)
    for sim in sims:
        await sim.stop()
    print(json.dumps({"versions": versions, "cpu_s": cpu_seconds(),
                      "frames": sum(sim.frames_served for sim in sims),
                      "blocks_by_hand": sum(sim.blocks_by_hand for sim in sims)}), flush=True)


# --- child: one concentrator, its firmware steps timed ---------------------------------------
PHASES: dict[str, list[tuple[float, float]]] = {"download": [], "transfer": [], "verify": [], "activate": []}
BLOCKS = [0]


def timed(owner: type, name: str, phase: str) -> None:
    """Wrap ``owner.name`` (a coroutine method) to record (start, end) wall times into PHASES."""
    original = getattr(owner, name)

    async def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        started = time.time()
        try:
            result = await original(self, *a, **kw)
        finally:
            PHASES[phase].append((started, time.time()))
        if phase == "transfer":
            BLOCKS[0] += result.blocks_sent
        return result

    setattr(owner, name, wrapper)


async def run_concentrator(args: argparse.Namespace) -> None:
    from edge.concentrator import Concentrator
    from edge.config import load_config
    from edge.dlms.image_transfer import ImageTransferClient

    timed(Downloader, "_download", "download")
    for step in ("transfer", "verify", "activate"):
        timed(ImageTransferClient, step, step)
    concentrator = Concentrator.from_config(load_config(Path(args.config)))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator")
    await stdin_closed()
    stop.set()
    await task
    print(json.dumps({"phases": PHASES, "blocks": BLOCKS[0], "cpu_s": cpu_seconds()}), flush=True)


# --- the parent --------------------------------------------------------------------------------
class Child:
    """A child process of this bench, told to stop by closing its stdin; its last line is its figures."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_ota", *argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=Path(__file__).parent.parent)

    def line(self) -> dict[str, Any]:
        raw = self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"child {self.proc.args} ended: {self.log.read_text()[-2000:]}")
        return json.loads(raw)

    def finish(self) -> dict[str, Any]:
        self.proc.stdin.close()
        figures = self.line()
        self.proc.wait(60)
        return figures


def meter_entry(meter_id: str, port: int, mode: SecurityMode) -> str:
    extra = (f'password = "{PASSWORD}"' if mode is SecurityMode.LLS
             else f'block_cipher_key = "{KEY_A.hex()}"\nauthentication_key = "{KEY_B.hex()}"')
    return (f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{meter_id}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "{mode.value}"\nprofile = "smr-5"\nmodel = "{MODEL}"\ninterval_s = 3600\ntimeout_s = 30\n'
            f'{extra}\n')


def concentrator_config(work: Path, c: int, broker: LocalMosquitto, ports: list[int],
                        args: argparse.Namespace) -> Path:
    directory = work / conc_id(c)
    directory.mkdir()
    account = conc_account(c)
    mode = SecurityMode(args.security)
    config = directory / "concentrator.toml"
    config.write_text(
        f'concentrator_id = "{account.username}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        f'invocation_counters = "counters.sqlite"\n\n[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'username = "{account.username}"\npassword = "{account.password}"\n\n[backfill]\nenabled = false\n\n'
        f'[firmware]\ntrusted_keys = ["{work / "keys"}"]\nchunk_size = {args.chunk_kib * 1024}\n'
        f'window = {args.window}\nbatch = {args.batch}\n\n'
        + "\n".join(meter_entry(m, p, mode) for m, p in zip(meters_of(c, args), ports, strict=True)))
    return config


async def register(registry: Registry, args: argparse.Namespace) -> list[str]:
    """The fleet in the registry: concentrator c is substation S<c>, its meters on its own feeders."""
    await registry.add_organisation(OrganisationCreate(identification=ORG, name="Utility"))
    now = utcnow()
    rows = []
    for c in range(1, args.concentrators + 1):
        for k, meter in enumerate(meters_of(c, args)):
            rows.append({"identification": meter, "device_type": "SMART_METER", "protocol": "DLMS",
                         "state": "ACTIVE", "concentrator_id": conc_id(c), "model": MODEL, "firmware_version": "1.0.0",
                         "substation": f"S{c:02d}", "feeder": f"S{c:02d}-F{k % args.feeders_per}",
                         "created_at": now, "updated_at": now})
    ids = sorted(row["identification"] for row in rows)
    async with registry.engine.begin() as conn:
        org_id = await conn.scalar(select(Organisation.id).where(Organisation.identification == ORG))
        await conn.execute(insert(Device), [
            {"identification": conc_id(c), "device_type": "CONCENTRATOR", "protocol": "MQTT", "state": "ACTIVE",
             "created_at": now, "updated_at": now} for c in range(1, args.concentrators + 1)])
        await conn.execute(insert(Device), rows)
        device_ids = (await conn.execute(select(Device.id).where(Device.identification.in_(ids)))).scalars().all()
        await conn.execute(insert(DeviceAuthorisation), [
            {"device_id": d, "organisation_id": org_id, "function_group": FunctionGroup.FIRMWARE.value,
             "created_at": now} for d in device_ids])
    return ids


def session(broker: LocalMosquitto, account: Account, name: str) -> MqttSession:
    return MqttSession(client_id=name, host=broker.host, port=broker.port, username=account.username,
                       password=account.password, session_expiry=0, receive_maximum=1000, max_inflight=1000)


async def raw_pass(pub: MqttSession, received: list[int], arrived: asyncio.Event, *, size: int,
                   count: int) -> float:
    """Bytes/s of ``count`` QoS 1 messages of ``size`` bytes from ``pub`` to the session counting into ``received``."""
    payload = os.urandom(size)
    received[0], received[1] = 0, count
    arrived.clear()
    started = time.perf_counter()
    await asyncio.gather(*(pub.publish("bench/raw", payload, qos=1) for _ in range(count)))
    await arrived.wait()
    return size * count / (time.perf_counter() - started)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return at(0.25), at(0.5), at(0.75)


async def download_rates(broker: LocalMosquitto, work: Path, store: FirmwareStore, signed: SignedManifest,
                         trusted: dict[str, bytes], args: argparse.Namespace) -> None:
    """(a) raw broker and (b) one download through ChunkServer -> Downloader, on this broker now.

    Fair by construction: (a) moves the same bytes as (b), in messages of the chunk size, between
    two sessions made as (b)'s are (same window and receive maximum, connected beforehand); the
    two alternate ``--download-runs`` times, which one goes first alternating too, so both see
    the same load. Printed: each pair, the median ratio with its quartiles, and the CPU time of
    this process's event-loop thread per MiB for each (the robust figure on a loaded machine;
    (b)'s hashing and syncing threads are apart). ``--profile`` profiles one more (b) after the
    pairs (not counted in them).
    """
    chunk = args.chunk_kib * 1024
    size = signed.manifest.size
    count = -(-size // chunk)
    mib = size / 2**20
    account = conc_account(1)
    raws: list[float] = []
    rates: list[float] = []
    raw_cpu: list[float] = []
    dl_cpu: list[float] = []
    received, arrived = [0, 0], asyncio.Event()

    async def on_raw(_message: Message) -> None:
        received[0] += 1
        if received[0] == received[1]:
            arrived.set()

    async with session(broker, CLOUD, "bench-rate-cloud") as cloud, \
            session(broker, account, "bench-rate-conc") as conc, \
            session(broker, CLOUD, "bench-raw-pub") as pub, session(broker, CLOUD, "bench-raw-sub") as sub:
        server = ChunkServer(session=cloud, store=store)
        await server.start()
        await sub.subscribe("bench/raw", on_raw)

        async def raw() -> None:
            cpu = time.thread_time()
            raws.append(await raw_pass(pub, received, arrived, size=chunk, count=count))
            raw_cpu.append((time.thread_time() - cpu) * 1e3 / mib)

        async def download(attempt: int | str, profile: cProfile.Profile | None = None) -> None:
            downloader = Downloader(session=conc, concentrator_id=account.username,
                                    cache_dir=work / f"rate-cache-{attempt}", trusted=trusted, chunk_size=chunk,
                                    window=args.window, batch=args.batch)
            await downloader.start()
            cpu, started = time.thread_time(), time.perf_counter()
            with profile or contextlib.nullcontext():
                await downloader.fetch(signed)
            rates.append(size / (time.perf_counter() - started))
            dl_cpu.append((time.thread_time() - cpu) * 1e3 / mib)

        await raw()  # a first pass warms both paths up (not counted)
        await download("warm-up")
        raws.clear(), rates.clear(), raw_cpu.clear(), dl_cpu.clear()
        for attempt in range(args.download_runs):
            if attempt % 2:
                await download(attempt)
                await raw()
            else:
                await raw()
                await download(attempt)
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            await download("profiled", profile)
            rates.pop(), dl_cpu.pop()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats(args.profile_sort).print_stats(30)
            print("\n".join(line for line in text.getvalue().splitlines()[:50] if line.strip()))
    pairs = ", ".join(f"{r / 1e6:.1f}/{w / 1e6:.1f}" for r, w in zip(rates, raws, strict=True))
    low, median, high = quartiles([r / w for r, w in zip(rates, raws, strict=True)])
    raw_low, raw_median, raw_high = quartiles(raws)
    dl_low, dl_median, dl_high = quartiles(rates)
    load = os.getloadavg()
    print(f"(a) raw broker       {raw_median / 1e6:8.2f} MB/s median (quartiles {raw_low / 1e6:.1f}-"
          f"{raw_high / 1e6:.1f}; QoS 1, {count} messages of {chunk // 1024} KiB, the image's bytes); "
          f"loop CPU {quartiles(raw_cpu)[1]:.2f} ms/MiB")
    print(f"(b) MQTT download    {dl_median / 1e6:8.2f} MB/s median (quartiles {dl_low / 1e6:.1f}-{dl_high / 1e6:.1f}; "
          f"window {args.window}, batch {args.batch}); loop CPU {quartiles(dl_cpu)[1]:.2f} ms/MiB")
    print(f"download/raw, {len(rates)} alternating pairs (MB/s) {pairs}: median ratio {median:.2f} "
          f"(quartiles {low:.2f}-{high:.2f}); load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


async def wait_online(cloud: MqttSession, ids: list[str]) -> None:
    online: set[str] = set()
    everyone = asyncio.Event()

    async def on_status(message: Message) -> None:
        if json.loads(message.payload).get("state") == "ONLINE":
            online.add(message.topic.split("/")[1])
            if online >= set(ids):
                everyone.set()

    for cid in ids:
        await cloud.subscribe(topics.concentrator_status(cid), on_status)
    await asyncio.wait_for(everyone.wait(), 120)


async def campaign(broker: LocalMosquitto, registry: Registry, catalogue: FirmwareCatalogue, store: FirmwareStore,
                   ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    sessions = [session(broker, CLOUD, f"bench-{role}") for role in ("core", "runner", "chunks")]
    for s in sessions:
        await s.connect()
    try:
        dead_letters = DeadLetterStore(engine=registry.engine)
        await dead_letters.create_schema()
        core = CoreDispatcher(session=sessions[0], registry=registry, store=CommandStore(registry.engine),
                              dead_letters=dead_letters, pump_interval=0.1)
        await core.start()
        server = ChunkServer(session=sessions[2], store=store)
        await server.start()
        campaigns = CampaignStore(registry.engine)
        service = CampaignService(store=campaigns, catalogue=catalogue, registry=registry)
        started = time.time()
        created = await service.create(CampaignCreate(
            name="fleet", firmware_id=f"fleet-{VERSION}", devices=ids, grouping=Grouping.SUBSTATION,
            canary_size=args.canary, max_groups_per_wave=args.groups_per_wave, max_in_flight=args.meters,
            max_in_flight_per_feeder=args.meters, command_ttl_seconds=3600, start=True), organisation=ORG)
        runner = CampaignRunner(store=campaigns, catalogue=catalogue, registry=registry, publisher=sessions[1],
                                runner_id="bench", poll_interval=0.05)
        # The runner ticks every 50 ms; the campaign's status (a count over every target) is read once a
        # second, so the bench's own reading costs little of this process's CPU.
        last_print = last_status = time.time()
        while (status := await service.status(created.id)).campaign.active:
            while time.time() - last_status < 1.0:
                await runner.tick()
                await asyncio.sleep(0.05)
            last_status = time.time()
            if last_status - last_print > 30:
                last_print = last_status
                counts = {str(state): count for state, count in status.counts.items() if count}
                print(f"    ... {last_status - started:5.0f} s: {counts}", flush=True)
        # The runner's own record of the end, not when this loop next looked.
        ended = status.campaign.finished_at
        finished = ended.replace(tzinfo=UTC).timestamp() if ended is not None else time.time()
        await core.close()
        reported: Counter[str | None] = Counter()
        for page in range(-(-len(ids) // 500)):
            for target in await service.targets(created.id, state=None, page=page, page_size=500):
                reported[target.reported_version] += 1
        async with registry.engine.connect() as conn:
            commands, devices = (await conn.execute(
                select(func.count(), func.count(func.distinct(CommandRow.device)))
                .where(CommandRow.name == "update_firmware"))).one()
    finally:
        for s in sessions:
            await s.close()
    return {"started": started, "finished": finished, "status": status, "reported": reported,
            "commands": commands, "devices_commanded": devices, "server": server}


def span(pairs: list[tuple[float, float]]) -> tuple[float, float, float, int]:
    """(first start, last end, mean duration, count) of (start, end) pairs."""
    return (min(p[0] for p in pairs), max(p[1] for p in pairs),
            sum(p[1] - p[0] for p in pairs) / len(pairs), len(pairs))


def report(result: dict[str, Any], concentrators: dict[str, dict[str, Any]], hosts: list[dict[str, Any]],
           image_size: int, args: argparse.Namespace) -> None:
    status, server, t0 = result["status"], result["server"], result["started"]
    wall = result["finished"] - t0
    outcomes = {str(state): count for state, count in status.counts.items() if count}
    print(f"campaign: {status.campaign.state.value} in {wall:.1f} s wall; outcomes {outcomes}; "
          f"{result['commands']} update_firmware commands to {result['devices_commanded']} meters")
    for wave in status.waves:
        start = (wave.started_at.replace(tzinfo=UTC).timestamp() - t0) if wave.started_at else float("nan")
        print(f"  wave {wave.index}{' (canary)' if wave.canary else ''}: {sum(wave.counts.values())} meters in "
              f"{', '.join(wave.groups)}; started at +{start:.1f} s")
    print(f"versions the campaign recorded: {dict(result['reported'])}; the meters report: "
          f"{dict(sum((Counter(h['versions']) for h in hosts), Counter()))}")
    downloads = server.bytes_served / image_size
    per_concentrator = dict(sorted(server.bytes_by_concentrator.items()))
    print(f"ChunkServer: {server.chunks_served} chunks, {server.bytes_served} bytes served = {downloads:.2f} "
          f"downloads of the {image_size}-byte image; bytes per concentrator {per_concentrator}; "
          f"errors {server.errors_sent}, dropped {server.dropped}")
    phases = {name: [tuple(p) for fig in concentrators.values() for p in fig["phases"][name]]
              for name in ("download", "transfer", "verify", "activate")}
    for name, pairs in phases.items():
        if not pairs:
            print(f"  {name:9s}: none")
            continue
        first, last, mean, count = span(pairs)
        print(f"  {name:9s}: {count:5d}x, from +{first - t0:6.1f} s to +{last - t0:6.1f} s "
              f"(span {last - first:6.1f} s), {mean:7.2f} s each on average")
    blocks = sum(fig["blocks"] for fig in concentrators.values())
    if phases["transfer"]:
        first, last, _, _ = span(phases["transfer"])
        print(f"  DLMS blocks: {blocks} of {args.block} B sent, {blocks / (last - first):.0f} blocks/s over the "
              f"fleet ({blocks * args.block / 1024 / (last - first):.0f} KiB/s)")


async def parent(args: argparse.Namespace, work: Path) -> None:
    accounts = [CLOUD, *(conc_account(c) for c in range(1, args.concentrators + 1))]
    broker = LocalMosquitto(directory=work / "mosquitto", port=free_port(), accounts=accounts)
    broker.start()
    children: list[Child] = []
    try:
        private, public = generate_key()
        (work / "keys").mkdir()
        (work / "keys" / "release.pem").write_bytes(public)
        trusted = {key_id_of(public): public}
        image = build_sim_image(VERSION, os.urandom(args.size_kib * 1024 - 10))
        manifest = FirmwareManifest(firmware_id=f"fleet-{VERSION}", version=VERSION, device_models=[MODEL],
                                    image_identifier=f"FLEET-{VERSION}", size=len(image),
                                    sha256=hashlib.sha256(image).hexdigest(),
                                    created=datetime.now(UTC).replace(microsecond=0))
        signed = sign(manifest, private)
        store = FirmwareStore(root=work / "store")
        store.add(image=image, signed=signed, trusted=trusted)
        load_before = os.getloadavg()
        print(f"image {len(image) / 1024:.0f} KiB, {args.meters} meters ({args.security}, DLMS block {args.block} B) "
              f"behind {args.concentrators} concentrators, chunk {args.chunk_kib} KiB, window {args.window}; "
              f"load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, {os.cpu_count()} CPUs", flush=True)
        await download_rates(broker, work, store, signed, trusted, args)
        if args.rates_only:
            return

        hosts = []
        for c in range(1, args.concentrators + 1):
            child = Child(["--role", "meters", "--count", str(len(meters_of(c, args))), "--block", str(args.block),
                           "--security", args.security], work / f"meters-{c}.log")
            children.append(child)
            hosts.append(child)
        ports = [host.line()["ports"] for host in hosts]
        concs = {}
        for c in range(1, args.concentrators + 1):
            config = concentrator_config(work, c, broker, ports[c - 1], args)
            concs[conc_id(c)] = child = Child(["--role", "concentrator", "--config", str(config)],
                                              work / f"{conc_id(c)}.log")
            children.append(child)
        url = f"sqlite+aiosqlite:///{work / 'registry.db'}"
        await migrate(url)
        async with Registry(url=url) as registry:
            ids = await register(registry, args)
            catalogue = FirmwareCatalogue(registry.engine)
            await catalogue.record(signed, uploaded_by="bench")
            # Every concentrator up (its start-up CPU is not the campaign's) before the CPU is read.
            async with session(broker, CLOUD, "bench-online") as watcher:
                await wait_online(watcher, [conc_id(c) for c in range(1, args.concentrators + 1)])
            cpu_before = {"bench (core, runner, ChunkServer)": cpu_seconds(),
                          "mosquitto": cpu_of_pid(broker.process.proc.pid)}
            cpu_before |= {f"{cid} process": cpu_of_pid(child.proc.pid) for cid, child in concs.items()}
            cpu_before |= {f"meters of {conc_id(n)}": cpu_of_pid(h.proc.pid) for n, h in enumerate(hosts, start=1)}
            result = await campaign(broker, registry, catalogue, store, ids, args)
        cpu_after = {"bench (core, runner, ChunkServer)": cpu_seconds(),
                     "mosquitto": cpu_of_pid(broker.process.proc.pid)}
        conc_figures = {cid: child.finish() for cid, child in concs.items()}
        host_figures = [host.finish() for host in hosts]
        cpu_after |= {f"{cid} process": fig["cpu_s"] for cid, fig in conc_figures.items()}
        cpu_after |= {f"meters of {conc_id(n)}": fig["cpu_s"] for n, fig in enumerate(host_figures, start=1)}
        load_after = os.getloadavg()
        report(result, conc_figures, host_figures, len(image), args)
        print(f"load {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} at the end; CPU seconds during "
              f"the campaign:")
        total = 0.0
        for name, after in cpu_after.items():
            used = after - cpu_before[name]
            total += used
            print(f"  {name:36s} {used:8.1f}")
        wall = result["finished"] - result["started"]
        print(f"  {'all':36s} {total:8.1f}  ({total / wall:.2f} cores busy on average over {wall:.1f} s)")
        blocks = sum(fig["blocks"] for fig in conc_figures.values())
        if blocks:
            concs_cpu = sum(cpu_after[f"{cid} process"] - cpu_before[f"{cid} process"] for cid in concs)
            hosts_cpu = sum(cpu_after[f"meters of {conc_id(n)}"] - cpu_before[f"meters of {conc_id(n)}"]
                            for n in range(1, len(hosts) + 1))
            by_hand = sum(fig.get("blocks_by_hand", 0) for fig in host_figures)
            print(f"  per DLMS block ({blocks} blocks; all of each process's CPU, association and polls included): "
                  f"concentrators {concs_cpu / blocks * 1e6:.0f} us, simulated meters {hosts_cpu / blocks * 1e6:.0f} "
                  f"us; the meters answered {by_hand} blocks by hand, {blocks - by_hand} through gurux")
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--concentrators", type=int, default=10)
    parser.add_argument("--size-kib", type=int, default=1024)
    parser.add_argument("--block", type=int, default=512, help="the simulated meters' image_block_size")
    parser.add_argument("--security", default=SecurityMode.HLS_GMAC.value,
                        choices=[m.value for m in (SecurityMode.LLS, SecurityMode.HLS_GMAC)])
    parser.add_argument("--chunk-kib", type=int, default=32)
    parser.add_argument("--window", type=int, default=4, help="download requests in flight (the concentrator's default)")
    parser.add_argument("--batch", type=int, default=32, help="chunks per download request (the concentrator's default)")
    parser.add_argument("--feeders-per", type=int, default=4, help="feeders per concentrator")
    parser.add_argument("--canary", type=int, default=10)
    parser.add_argument("--groups-per-wave", type=int, default=5, help="substations (concentrators) per wave")
    parser.add_argument("--download-runs", type=int, default=9, help="alternating (a)/(b) pairs")
    parser.add_argument("--profile", action="store_true", help="cProfile one more (b) download (loop CPU time)")
    parser.add_argument("--profile-sort", default="tottime", help="pstats order: tottime, cumulative, ...")
    parser.add_argument("--rates-only", action="store_true", help="stop after (a) and (b)")
    parser.add_argument("--role", choices=["parent", "meters", "concentrator"], default="parent")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--config", default="")
    args = parser.parse_args()
    if args.role == "meters":
        asyncio.run(host_meters(args))
    elif args.role == "concentrator":
        asyncio.run(run_concentrator(args))
    else:
        with tempfile.TemporaryDirectory(prefix="gw-fleet-ota-") as tmp:
            asyncio.run(parent(args, Path(tmp)))


if __name__ == "__main__":
    main()

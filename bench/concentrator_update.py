"""Bench: the concentrator as an appliance (issue 15 item 5). Prints, as JSON lines:

1. ``package``: the .deb's and the offline bundle's sizes (scripts/package_concentrator.py);
2. ``install``: the offline install's time: the bundle unpacked, its SHA256SUMS checked, the .deb
   installed with ``dpkg --root`` into a throwaway root (its postinst builds the venv from the
   wheels it carries, no network);
3. ``update``: one concentrator's self-update, from the installed package's venv (A) to an
   over-the-air image of the same software (B, ``package_concentrator.py --software``): download
   by the chunk transfer, unpack and switch, restart, health check, with a DLMS meter read every
   second meanwhile; the forwarding pause (the longest gap between confirmed readings at the
   cloud) and the meter's reading gap; nothing lost (the outbox sequence numbers have no gap);
4. ``rss``: the resident memory of the installed ``gridwire concentrator run`` with 100 DLMS
   meters (LLS, polled every 5 s by a simulator child that also confirms every message), started
   as the unit starts it, by ``gridwire concentrator supervise`` (whose memory it prints too), and
   of the installed Python importing each part, to see where the memory goes.

    .venv/bin/python bench/concentrator_update.py
    .venv/bin/python bench/concentrator_update.py --checkout OTHER_TREE   # rss only, of a source tree
    .venv/bin/python bench/concentrator_update.py --checkout TREE --python EDGE_VENV/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker import topics  # noqa: E402
from broker.mosquitto_conf import Account  # noqa: E402
from broker.schemas import SEQ_PROPERTY, DeliveryAck  # noqa: E402
from broker.schemas.command import CommandResponse, GenericCommand  # noqa: E402
from broker.schemas.firmware import CONCENTRATOR_SOFTWARE, FirmwareManifest, created_now  # noqa: E402
from broker.session import Message, MqttSession, publish_properties  # noqa: E402
from edge.dlms.cli import DEMO_PASSWORD, build_simulator  # noqa: E402
from firmware_ota.chunk_server import ChunkServer  # noqa: E402
from firmware_ota.signing import generate_key, key_id_of, sign  # noqa: E402
from firmware_ota.store import FirmwareStore  # noqa: E402
from gridwire.procs import free_port  # noqa: E402
from gridwire.services import LocalMosquitto  # noqa: E402

CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
CONC = Account(username="conc-1", password="bench-conc-pw", role="concentrator")
CID = "conc-1"
MODEL = "gridwire-concentrator"


def packager():
    spec = importlib.util.spec_from_file_location("package_concentrator", ROOT / "scripts" / "package_concentrator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emit(what: str, **figures: object) -> None:
    print(json.dumps({"bench": what, **figures}), flush=True)


# --- 1, 2: the package and its offline install ------------------------------------------------------

def package_and_install(work: Path) -> tuple[Path, Path]:
    """Build, then install from the offline bundle into a throwaway root; the root and the bundle."""
    started = time.perf_counter()
    deb, bundle = packager().build(work / "dist")
    emit("package", deb=deb.name, deb_mb=round(deb.stat().st_size / 1e6, 2),
         bundle_mb=round(bundle.stat().st_size / 1e6, 2), build_s=round(time.perf_counter() - started, 1))
    usb = work / "usb"
    root = work / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    started = time.perf_counter()
    with tarfile.open(bundle) as tar:
        tar.extractall(usb)  # noqa: S202 - our own bundle
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=usb, check=True)
    unpacked = time.perf_counter()
    subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "-i",
                    str(usb / deb.name)], check=True, stdout=subprocess.DEVNULL)
    done = time.perf_counter()
    venv = root / "opt/gridwire/venv"
    emit("install", from_bundle_s=round(done - started, 1), unpack_and_check_s=round(unpacked - started, 1),
         dpkg_s=round(done - unpacked, 1),
         venv_mb=round(sum(p.stat().st_size for p in venv.rglob("*") if p.is_file()) / 1e6, 1))
    return root, bundle


# --- 3: one self-update -------------------------------------------------------------------------------

class Cloud:
    """Confirms every outbox message (as ingest does), and watches the update's steps."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.seqs: set[int] = set()
        self.arrivals: list[tuple[float, float]] = []   # (arrival, readingTime) of each new reading
        self.requests: list[float] = []
        self.status: list[tuple[float, str]] = []
        self.response: asyncio.Future[tuple[float, CommandResponse]] | None = None

    async def on_reading(self, message: Message) -> None:
        seq = int(message.user_properties[SEQ_PROPERTY])
        if seq not in self.seqs and message.topic.endswith("/meterReading"):
            from datetime import datetime
            reading_time = datetime.fromisoformat(json.loads(message.payload)["readingTime"]).timestamp()
            self.arrivals.append((time.perf_counter(), reading_time))
        self.seqs.add(seq)
        await self.session.publish(topics.concentrator_ack(CID), DeliveryAck.of([seq]).to_wire(), qos=1)

    async def on_request(self, _message: Message) -> None:
        self.requests.append(time.perf_counter())

    async def on_status(self, message: Message) -> None:
        if message.payload:
            self.status.append((time.perf_counter(), json.loads(message.payload)["state"]))

    async def on_response(self, message: Message) -> None:
        if self.response is not None and not self.response.done():
            self.response.set_result((time.perf_counter(), CommandResponse.model_validate_json(message.payload)))


async def update(work: Path, root: Path, bundle: Path, mosquitto: LocalMosquitto) -> None:
    venv = root / "opt/gridwire/venv"
    interpreter = os.path.realpath(venv / "bin" / "python3")
    image = packager().software_image(bundle, work / "ota", interpreter=interpreter, python=str(venv / "bin/python3"))
    data = image.read_bytes()
    private, public = generate_key()
    keys = work / "keys"
    keys.mkdir()
    (keys / "release.pem").write_bytes(public)
    version = "0.1.0+ota1"
    signed = sign(FirmwareManifest(firmware_id="concentrator-0.1.0-ota1", version=version, device_models=[MODEL],
                                   image_identifier="gridwire-ota1", size=len(data), kind=CONCENTRATOR_SOFTWARE,
                                   sha256=hashlib.sha256(data).hexdigest(), created=created_now()), private)
    store = FirmwareStore(root=work / "store")
    store.add(image=data, signed=signed, trusted={key_id_of(public): public})

    sim = build_simulator(port=0, security="lls", serial="GWBENCHOTA")
    await sim.start()
    conc = work / "conc"
    conc.mkdir()
    config = conc / "concentrator.toml"
    config.write_text(
        f'concentrator_id = "{CID}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\nstatus_interval = 5\n'
        'confirm_timeout = 5\n'
        f'[broker]\nport = {mosquitto.port}\nusername = "{CID}"\npassword = "{CONC.password}"\n'
        f'[backfill]\nenabled = false\n[firmware]\ntrusted_keys = ["{keys}"]\nchunk_size = 65536\nwindow = 8\n'
        f'[software]\nmodel = "{MODEL}"\nhealth_deadline = 60\n\n'
        f'[[meters]]\nprotocol = "dlms"\nmeter_id = "ota-meter"\nhost = "127.0.0.1"\nport = {sim.port}\n'
        f'security = "lls"\npassword = "{DEMO_PASSWORD}"\nprofile = "smr-5"\ninterval_s = 1\n')
    session = MqttSession(client_id="bench-cloud", host="127.0.0.1", port=mosquitto.port, username=CLOUD.username,
                          password=CLOUD.password, session_expiry=600)
    await session.connect()
    cloud = Cloud(session)
    server = ChunkServer(session=session, store=store)
    await server.start()
    spy = MqttSession(client_id="bench-spy", host="127.0.0.1", port=mosquitto.port, username=CLOUD.username,
                      password=CLOUD.password)
    await spy.connect()
    await spy.subscribe(f"concentrator/{CID}/firmware/request", cloud.on_request)
    await spy.subscribe(topics.concentrator_status(CID), cloud.on_status)
    await spy.subscribe(topics.concentrator_response(CID), cloud.on_response)
    await session.subscribe(f"concentrator/{CID}/smartMeterMessage/#", cloud.on_reading)
    log = (conc / "supervisor.log").open("wb")
    supervisor = subprocess.Popen([str(venv / "bin/gridwire"), "concentrator", "supervise", str(config),
                                   "--software-dir", str(work / "software")], cwd=conc, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        while len(cloud.arrivals) < 5:
            await asyncio.sleep(0.1)
        cloud.response = asyncio.get_running_loop().create_future()
        command = GenericCommand(deviceId=CID, name="update_firmware",
                                 parameters={"signedManifest": json.loads(signed.to_wire())}, issuedAt=created_now())
        sent = time.perf_counter()
        await session.publish(topics.concentrator_command(CID), command.to_wire(), qos=1, properties=publish_properties(
            correlation_data=command.correlation_data(), response_topic=topics.concentrator_response(CID),
            message_expiry=600))
        answered, response = await asyncio.wait_for(cloud.response, 300)
        offline = next(t for t, state in cloud.status if t > sent and state == "OFFLINE")
        online = next(t for t, state in cloud.status if t > offline and state == "ONLINE")
        settle = time.perf_counter()
        while time.perf_counter() - settle < 10 or max(cloud.seqs) != len(cloud.seqs):
            await asyncio.sleep(0.2)
        arrivals = [a for a, _ in cloud.arrivals]
        times = sorted(r for _, r in cloud.arrivals)
        around = [b - a for a, b in zip(arrivals, arrivals[1:]) if b > sent]
        emit("update", status=str(response.status), version=(response.result or {}).get("firmwareVersion"),
             image_mb=round(len(data) / 1e6, 2), total_s=round(answered - sent, 1),
             download_s=round(cloud.requests[-1] - sent, 1), unpack_and_switch_s=round(offline - cloud.requests[-1], 1),
             restart_s=round(online - offline, 1), health_s=round(answered - online, 1),
             forwarding_pause_s=round(max(around), 1), reading_gap_s=round(max(
                 b - a for a, b in zip(times, times[1:])), 1),
             readings=len(arrivals), lost=len(set(range(1, max(cloud.seqs) + 1)) - cloud.seqs))
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(60)
        log.close()
        await spy.close()
        await session.close()
        await sim.stop()


# --- 4: memory ------------------------------------------------------------------------------------------

IMPORTS = [("python", ""), ("pydantic", "import pydantic"), ("paho", "import paho.mqtt.client"),
           ("cryptography", "import cryptography.hazmat.primitives.asymmetric.ed25519"),
           ("gurux_dlms", "import gurux_dlms"), ("pymodbus", "import pymodbus.client"),
           ("typer", "import typer"), ("edge.concentrator", "import edge.concentrator"),
           ("edge.concentrator+gurux", "import edge.concentrator, gurux_dlms"),
           ("gridwire.cli", "import gridwire.cli"),
           ("supervisor", "import gridwire.concentrator_process, edge.selfupdate.supervisor")]


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1.0


def rss_split(pid: int) -> dict[str, float]:
    """The resident memory by kind (/proc/PID/status): anonymous (heaps, Python objects) and
    file-backed (the interpreter's and extension modules' code, shared with other processes)."""
    kinds = {"RssAnon:": "anon_mib", "RssFile:": "file_mib"}
    return {kinds[line.split()[0]]: round(int(line.split()[1]) / 1024, 1)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.split()[0] in kinds}


def import_rss(python: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    probe = "import sys; {}; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    return {name: round(int(subprocess.run([str(python), "-c", probe.format(code or "pass")], check=True,
                                           capture_output=True, text=True, cwd="/", env=env).stdout) / 1024, 1)
            for name, code in IMPORTS}


async def memory(work: Path, python: Path, mosquitto: LocalMosquitto, meters: int, seconds: float,
                 env: dict[str, str] | None = None) -> None:
    """``python -m gridwire concentrator supervise`` running ``concentrator run`` with ``meters``
    DLMS meters: the concentrator's and the supervisor's RSS after ``seconds``, and ``python``'s
    RSS importing each part."""
    child = subprocess.Popen([sys.executable, str(ROOT / "bench" / "concentrator.py"), "--serve", "lls",
                              "--meters", str(meters), "--mqtt-port", str(mosquitto.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    ports = json.loads(child.stdout.readline())
    directory = work / "rss"
    directory.mkdir()
    config = directory / "concentrator.toml"
    config.write_text(
        f'concentrator_id = "{CID}"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\nstatus_interval = 5\n'
        f'[broker]\nport = {mosquitto.port}\nusername = "{CID}"\npassword = "{CONC.password}"\n'
        '[backfill]\nenabled = false\n\n' + "\n".join(
            f'[[meters]]\nprotocol = "dlms"\nmeter_id = "lls-{n}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "lls"\npassword = "{DEMO_PASSWORD}"\nprofile = "smr-5"\ninterval_s = 5\n'
            for n, port in enumerate(ports)))
    # As the unit runs it: the supervisor and the concentrator it starts, `<factory>/bin/gridwire
    # concentrator run`; that entry runs ``python`` as an over-the-air tree's does. (`-m gridwire.cli`
    # for a tree older than gridwire/__main__.py.)
    source = Path((env or {}).get("PYTHONPATH", ROOT))
    module = "gridwire" if (source / "gridwire" / "__main__.py").exists() else "gridwire.cli"
    entry = directory / "factory" / "bin" / "gridwire"
    entry.parent.mkdir(parents=True)
    entry.write_text(f'#!/bin/sh\nexec "{python}" -m {module} "$@"\n')
    entry.chmod(0o755)
    env = {**(env or os.environ), **unit_environment(source)}
    process = subprocess.Popen([str(python), "-m", module, "concentrator", "supervise", str(config),
                                "--software-dir", str(directory / "software"), "--factory", str(entry.parent.parent),
                                "--log-level", "WARNING"], cwd=directory, env=env)
    try:
        while not (concentrator := concentrator_of(process.pid)):  # the supervisor is still importing
            assert process.poll() is None, "the supervisor ended"
            await asyncio.sleep(0.2)
        samples = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            await asyncio.sleep(1)
            samples.append(rss_of(concentrator))
        assert concentrator_of(process.pid) == concentrator, "the concentrator was restarted"
        emit("rss", meters=meters, seconds=seconds, concentrator_rss_mib=round(samples[-1], 1),
             peak_rss_mib=round(max(samples), 1), **rss_split(concentrator),
             supervisor_rss_mib=round(rss_of(process.pid), 1),
             supervisor_anon_mib=rss_split(process.pid)["anon_mib"],
             imports_rss_mib=import_rss(python, env))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


def unit_environment(tree: Path) -> dict[str, str]:
    """The ``Environment=`` settings of the tree's systemd unit, which the appliance runs them with."""
    unit = tree / "config" / "systemd" / "gridwire-concentrator.service"
    return dict(line.removeprefix("Environment=").split("=", 1) for line in unit.read_text().splitlines()
                if line.startswith("Environment="))


def concentrator_of(supervisor: int) -> int:
    """The supervisor's child, the concentrator (0: not started yet)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(children) <= 1, f"the supervisor has children {children}"
    return int(children[0]) if children else 0


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gridwire-bench-") as tmp:
        work = Path(tmp)
        if args.checkout is not None:  # rss only, of a source tree run by this Python (no package)
            mosquitto = LocalMosquitto(directory=work / "mosquitto", port=free_port(), accounts=[CLOUD, CONC])
            mosquitto.start()
            try:
                await memory(work, args.python or Path(sys.executable), mosquitto, args.meters, args.seconds,
                             env={**os.environ, "PYTHONPATH": str(args.checkout.resolve())})
            finally:
                mosquitto.stop()
            return
        root, bundle = package_and_install(work)
        mosquitto = LocalMosquitto(directory=work / "mosquitto", port=free_port(), accounts=[CLOUD, CONC])
        mosquitto.start()
        try:
            if "update" in args.parts:
                await update(work, root, bundle, mosquitto)
            if "rss" in args.parts:
                await memory(work, root / "opt/gridwire/venv/bin/python3", mosquitto, args.meters, args.seconds)
        finally:
            mosquitto.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="update,rss", help="after package and install: update, rss or both")
    parser.add_argument("--meters", type=int, default=100, help="meters of the rss run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the rss run")
    parser.add_argument("--checkout", type=Path, help="only rss, of this source tree run by this Python (no "
                        "package, no install): before/after comparisons of a change")
    parser.add_argument("--python", type=Path, help="with --checkout: the Python that runs it (default: this "
                        "one); a venv of the edge extra alone is closest to the installed concentrator")
    asyncio.run(main(parser.parse_args()))

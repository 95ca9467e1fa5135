"""Bench: readings/s one whole Concentrator sustains against simulated DLMS (LLS, HLS) and Modbus
meters, its CPU seconds per reading, and its resident memory with many meters configured.

The real concentrator runs in this process (poller, adapters, durable outbox, ledger,
forwarder to a real Mosquitto); the simulated meters and a stand-in for the cloud (which
confirms every stored message with a DeliveryAck, as ingest does) run in a child process,
so ``time.process_time()`` here is the concentrator's own CPU.

    .venv/bin/python bench/concentrator.py --meters 20 --seconds 10
    .venv/bin/python bench/concentrator.py --kinds p1 --meters 100 --interval 1 --many 0 --paho paho,light

``p1``: DSMR 5 meters on ptys, a telegram each ``--interval`` seconds (simulated in the child).
``outbox``: no meters; a reading of each of ``--meters`` meters put in the outbox every
``--interval`` seconds, as P1 readers would: the forwarder's own cost.
``--paho paho,light`` runs the whole bench once with paho's own MQTT 5 properties (as before
issue 14, ``bench/paho_before.py``) and once with the light ones, each in a fresh process.

Live readings, per meter against batched (issue 14 item 5): every P1 telegram forwarded
(``--forward every --batch-s 1``), once a message per reading on its meter's OMDP topic and
once in live batches on ``concentrator/{cid}/batch/meterReading`` (``--live-batch off,on``,
each a fresh process; ``--window`` is the batch window in seconds)::

    .venv/bin/python bench/concentrator.py --kinds p1 --meters 100 --interval 1 --many 0 \
        --forward every --batch-s 1 --live-batch off,on --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker import topics  # noqa: E402
from broker.mosquitto_conf import Account  # noqa: E402
from broker.schemas.delivery import SEQ_PROPERTY, DeliveryAck, parse_seq_list  # noqa: E402
from broker.session import Message, MqttSession  # noqa: E402
from edge.dlms.cli import DEMO_AUTH_KEY, DEMO_BLOCK_KEY, DEMO_PASSWORD, build_simulator  # noqa: E402
from edge.modbus import ModbusSimulator, load_map  # noqa: E402
from gridwire.procs import free_port  # noqa: E402
from gridwire.services import LocalMosquitto  # noqa: E402

CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
CONC = Account(username="conc-1", password="bench-conc-pw", role="concentrator")


# --- child: meters and the cloud's confirmations ---------------------------------------------------

async def serve(kind: str, meters: int, mqtt_port: int, interval: float) -> None:
    """Start the simulators and an acking cloud; print the ports as one JSON line; run until stdin closes."""
    if kind == "p1":
        from datetime import UTC, datetime

        from edge.p1.simulator import MeterModel, P1Simulator

        start = datetime.now(UTC).replace(microsecond=0)
        sims: list = [P1Simulator(model=MeterModel(start=start, equipment_id=f"E{n:016d}",
                                                   gas_equipment_id=f"G{n:016d}"), interval=interval)
                      for n in range(meters)]
        paths = [sim.open() for sim in sims]
    elif kind == "outbox":  # no meters: the parent feeds the outbox itself
        sims = []
    elif kind == "modbus":
        register_map = load_map("solar-inverter")
        sims = [ModbusSimulator(register_map=register_map) for _ in range(meters)]
    else:
        sims = [build_simulator(port=0, security=kind, serial=f"GWBENCH{n:05d}") for n in range(meters)]
    for sim in sims:
        await sim.start()
    session = MqttSession(client_id="bench-cloud", host="127.0.0.1", port=mqtt_port, username=CLOUD.username,
                          password=CLOUD.password, receive_maximum=1000)
    await session.connect()
    seqs: list[int] = []

    async def on_reading(message: Message) -> None:
        seq = message.user_properties.get(SEQ_PROPERTY)
        if seq is not None:
            seqs.extend(parse_seq_list(seq))  # one number, or a live batch's

    async def acker() -> None:
        while True:
            await asyncio.sleep(0.05)
            if seqs:
                batch, seqs[:] = DeliveryAck.of(seqs), []
                await session.publish(topics.concentrator_ack("conc-1"), batch.to_wire(), qos=1)

    await session.subscribe("concentrator/conc-1/smartMeterMessage/#", on_reading)
    await session.subscribe(topics.concentrator_reading_batch("conc-1"), on_reading)
    task = asyncio.create_task(acker())
    sys.stdout.write(json.dumps(paths if kind == "p1" else [s.port for s in sims]) + "\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    task.cancel()
    await session.close()
    for sim in sims:
        await sim.stop()


# --- parent: the concentrator under test ----------------------------------------------------------

def meter_entry(kind: str, n: int, port: int | str, interval: float, forward: str = "aggregate",
                batch_s: float = 10.0) -> str:
    if kind == "p1":
        return (f'[[meters]]\nprotocol = "p1"\nport = "{port}"\nadapter_config = "p1-{n}.yaml"\n'
                f'forward = "{forward}"\nbatch_s = {batch_s}\n')
    if kind == "modbus":
        return (f'[[meters]]\nprotocol = "modbus"\nmeterIndividualId = "mb-{n}"\nregisterMap = "solar-inverter"\n'
                f'interval = {interval}\ntcp = {{ host = "127.0.0.1", port = {port} }}\n')
    secrets = (f'password = "{DEMO_PASSWORD}"\n' if kind == "lls" else
               f'block_cipher_key = "{DEMO_BLOCK_KEY}"\nauthentication_key = "{DEMO_AUTH_KEY}"\n')
    return (f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{kind}-{n}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "{kind}"\nprofile = "smr-5"\ninterval_s = {interval}\n{secrets}')


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def feed_outbox(concentrator, meters: int, interval: float, fed) -> None:  # noqa: ANN001
    """``--kinds outbox``: a live reading of each of ``meters`` meters into the outbox every
    ``interval`` seconds, as the P1 readers put them, but built once: the forwarding alone."""
    from datetime import UTC, datetime

    from edge.outbox import Keep
    from tests.factories import payload

    items = [(topics.concentrator_meter_message("conc-1", f"p1-{m}", "meterReading"),
              payload(f"p1-{m}", 0, start=datetime(2026, 1, 1, tzinfo=UTC))) for m in range(meters)]
    while True:
        concentrator.outbox.put_many(items, keep=Keep.LIVE)
        concentrator.forwarder.notify()
        fed(meters)
        await asyncio.sleep(interval)


async def measure(kind: str, meters: int, seconds: float, interval: float, mosquitto: LocalMosquitto,
                  workdir: Path, args: argparse.Namespace) -> dict:
    from edge.concentrator import Concentrator
    from edge.config import load_config

    # The child's simulators send at ``interval`` (P1: a telegram each); before, it was not passed and P1
    # meters sent at the option's default, 0.05 s.
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--meters", str(meters),
                              "--mqtt-port", str(mosquitto.port), "--interval", str(interval)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        directory = workdir / f"{kind}-{meters}"
        directory.mkdir()
        if kind == "outbox":
            ports = []
        for n in range(meters if kind == "p1" else 0):
            (directory / f"p1-{n}.yaml").write_text(
                f"meterIndividualId: p1-{n}\nphysicalMeterClass: ELECTRICITY\nprotocol: p1\nsubMeters:\n"
                f"- {{channel: 1, meterIndividualId: gas-{n}, physicalMeterClass: GAS}}\n")
        config = directory / "concentrator.toml"
        config.write_text(
            'concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\nstatus_interval = 5\n'
            f'[broker]\nport = {mosquitto.port}\nusername = "conc-1"\npassword = "{CONC.password}"\n'
            '[polling]\nbus_limit = 1\njitter = 0.0\n[backfill]\nenabled = false\n'
            f'[live_batch]\nenabled = {str(args.live_batch == "on").lower()}\nwindow_s = {args.window}\n\n'
            + "\n".join(meter_entry(kind, n, port, interval, args.forward, args.batch_s)
                         for n, port in enumerate(ports)))
        concentrator = Concentrator.from_config(load_config(config))
        count = 0
        submit = concentrator.submit

        def counting(readings, **kwargs):  # noqa: ANN001, ANN003
            nonlocal count
            readings = list(readings)
            count += len(readings)
            submit(readings, **kwargs)

        concentrator.submit = counting  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(concentrator.run(stop))
        if kind == "outbox":
            def fed(readings: int) -> None:
                nonlocal count
                count += readings

            feeder = asyncio.create_task(feed_outbox(concentrator, meters, interval, fed))
        await asyncio.sleep(min(3.0, seconds / 3))  # warm-up: first associations, register scalers
        start_count, cpu0, wall0 = count, time.process_time(), time.perf_counter()
        published0, batches0 = concentrator.forwarder.published, concentrator.forwarder.batches
        await asyncio.sleep(seconds)
        readings, cpu, wall = count - start_count, time.process_time() - cpu0, time.perf_counter() - wall0
        forwarded = concentrator.forwarder.published - published0
        batches = concentrator.forwarder.batches - batches0
        rss = rss_kib()
        backlog = len(concentrator.outbox)
        if kind == "outbox":
            feeder.cancel()
        stop.set()
        await task
        return {"kind": kind, "meters": meters, "interval_s": interval, "seconds": round(wall, 1),
                "readings": readings, "readings_per_s": round(readings / wall, 1),
                "forwarded": forwarded, "mqtt_messages": batches or forwarded,
                "cpu_s": round(cpu, 2),
                "cpu_ms_per_reading": round(1000 * cpu / max(readings, 1), 3),
                "cpu_ms_per_forwarded": round(1000 * cpu / max(forwarded, 1), 3),
                "cpu_share": round(cpu / wall, 2), "rss_mib": round(rss / 1024, 1), "outbox_backlog": backlog}
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)


async def main(args: argparse.Namespace) -> None:
    if args.paho == "paho":
        import bench.paho_before as before

        before.apply()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        mosquitto = LocalMosquitto(directory=workdir / "mosquitto", port=free_port(), accounts=[CLOUD, CONC])
        mosquitto.start()
        try:
            runs = [(kind, args.meters, args.interval) for kind in args.kinds.split(",")]
            if args.many:
                runs.append(("lls", args.many, args.many_interval))
            for kind, meters, interval in runs:
                result = await measure(kind, meters, args.seconds, interval, mosquitto, workdir, args)
                print(json.dumps({"properties": args.paho, "forward": args.forward, "live_batch": args.live_batch,
                                  **result, "load": [round(x, 2) for x in os.getloadavg()]}), flush=True)
        finally:
            mosquitto.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--mqtt-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--meters", type=int, default=20, help="meters per protocol run")
    parser.add_argument("--interval", type=float, default=0.05, help="poll interval (s); small = saturate")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kinds", default="lls,hls-gmac,modbus")
    parser.add_argument("--many", type=int, default=100, help="then a run with this many DLMS LLS meters (0: skip)")
    parser.add_argument("--many-interval", type=float, default=5.0)
    parser.add_argument("--paho", default="light", help="MQTT 5 properties: light (the fix), paho (paho's own, "
                        "as before issue 14), or paho,light: one fresh process each")
    parser.add_argument("--forward", default="aggregate", choices=("aggregate", "every"),
                        help="P1 meters: an aggregate per interval (default) or every telegram")
    parser.add_argument("--batch-s", type=float, default=10.0, help="P1 with --forward every: seconds per outbox write")
    parser.add_argument("--live-batch", default="off", help="live readings in live batches: off, on, or off,on "
                        "(one fresh process each)")
    parser.add_argument("--window", type=float, default=0.25, help="the live batch window (s)")
    cli = parser.parse_args()
    if cli.serve:
        asyncio.run(serve(cli.serve, cli.meters, cli.mqtt_port, cli.interval))
    elif "," in cli.paho or "," in cli.live_batch:
        option = "--paho" if "," in cli.paho else "--live-batch"
        for mode in (cli.paho if option == "--paho" else cli.live_batch).split(","):
            argv = [a for a in sys.argv[1:]]
            at = argv.index(option)
            argv[at + 1] = mode
            subprocess.run([sys.executable, __file__, *argv], check=True)
    else:
        asyncio.run(main(cli))

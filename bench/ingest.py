"""Bench: ingest end to end at the live shape (one reading per message), the live batch shape (a
concentrator's live readings of 25 meters in one message) and the batch shape (100 per message),
against raw InfluxDB and raw broker rates and the Node-RED peer, in one run.

Starts its own Mosquitto (the project's configuration) and influxd on free ports, then prints:

  (a) raw InfluxDB: ingest's points in the store's lean layout (ids derived, as the edge sends
      them), in its full layout (other ids: the layout before issue 14 but its concentrator
      string), and the same readings as bare float fields, each as points/s, influxd CPU us per
      point, and bytes on disk per point once influxd fully compacted them;
  (b) raw broker at each shape: pre-framed QoS 1 publishers -> Mosquitto -> one subscriber;
  (c) end to end for each shape and each ingest process count: pre-framed publishers
      (separate processes, ``gw-seq``, QoS 1, the edge's unconfirmed bound) -> Mosquitto -> N
      ``gridwire cloud ingest`` processes (refusing unknown senders, with a registry that knows
      the fleet) -> influxd; done when every message is confirmed; the stored count checked.
      CPU us per reading of every process, and the wall rate beside Node-RED's figures;
  (d) the known-senders check's cost per message (in process).

    .venv/bin/python bench/ingest.py                      # shapes 1, b25 and 100, 1 and 2 ingest processes
    .venv/bin/python bench/ingest.py --shapes 1,b25 --ingest 1   # live against live batches (issue 14 item 5)

A shape ``bN`` is a live batch: N readings, each of another meter of the concentrator, in one
message on ``concentrator/{cid}/batch/meterReading`` with each reading's own seq in ``gw-seq``
(the concentrator's ``live_batch`` option); the publishers bound unconfirmed readings, as the
edge bounds its outbox rows.
    .venv/bin/python bench/ingest.py --shapes 1 --ingest 2 --paho paho,light   # before/after the MQTT fix
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_runs import Message, disk_bytes_per_point, end_to_end, raw_broker, raw_influx  # noqa: E402
from broker import topics  # noqa: E402
from broker.schemas import MeterReading  # noqa: E402
from cloud.ingest.fast_encode import encode_payload  # noqa: E402
from gridwire.procs import free_port  # noqa: E402
from gridwire.services import LocalInfluxd  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACE = uuid.UUID("0b8f5f2e-3c1d-4b8e-9a0f-6d2c1e4b7a90")
METERS_PER_CONCENTRATOR = 50
# Node-RED with node-red-contrib-influxdb on this machine, one reading per message, 5 float
# properties, QoS 1, 10 publishers (MISSION.md, measured facts, wave 2): it acknowledges each
# message before writing it.
PEER = {"live": 12_307, "draining": 14_583, "cpu_us": 60}


def build_messages(*, readings: int, per_message: int | str, properties: int, concentrators: int,
                   derived_ids: bool = True) -> list[Message]:
    """Distinct readings, ``per_message`` of one meter per message (a bare MeterReading when 1,
    as a concentrator sends live), spread over concentrators; ``bN``: live batches, N readings of
    N meters of one concentrator per message. Their ids are derived from meter and time as
    Gridwire's adapters derive them (stored lean), or other ids (stored full)."""
    live_batch = isinstance(per_message, str)
    size = int(per_message[1:]) if isinstance(per_message, str) else per_message
    messages: list[Message] = []
    counters: dict[str, int] = {}
    index = 0
    while index * size < readings:
        count = min(size, readings - index * size)
        cid = f"conc-{index % concentrators + 1}"
        batch = []
        for n in range(count):
            slot = (index // concentrators) * (count if live_batch else 1) + (n if live_batch else 0)
            meter = f"{cid}-m{slot % METERS_PER_CONCENTRATOR:04d}"
            k = counters.get(meter, 0)
            counters[meter] = k + 1
            moment = T0 + timedelta(minutes=15 * k)
            when = moment.isoformat()
            ident = MeterReading.derive_id(meter, moment) if derived_ids else uuid.uuid5(NAMESPACE, f"{meter}|{k}")
            batch.append({
                "meterReadingIdentifier": str(ident),
                "readingTime": when,
                "propertyValues": [{"unit": "kWh", "date": when, "numericalValue": 1000.0 + k * 0.25 + p,
                                    "operationalPropertyDefinition": {"propertyId": f"OBIS_1.8.{p}"}}
                                   for p in range(properties)],
                "meterIndividual": {"meterIndividualId": meter,
                                    "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
            })
        first = batch[0]["meterIndividual"]["meterIndividualId"]
        doc = batch[0] if size == 1 and not live_batch else {"meterReadings": batch}
        payload = json.dumps(doc, separators=(",", ":")).encode()
        topic = (topics.concentrator_reading_batch(cid) if live_batch
                 else topics.concentrator_meter_message(cid, first, "meterReading"))
        messages.append(Message(cid, first, topic, payload, count))
        index += 1
    return messages


def bare_lines(lines: list[str]) -> list[str]:
    """The same points with their property values only, as bare float fields: the floor."""
    out = []
    for line in lines:
        head, fields, stamp = line.split(" ")
        values = [f for f in fields.split(",") if f.startswith("OBIS_") and "__" not in f]
        out.append(f"{head} {','.join(values)} {stamp}")
    return out


async def registered_fleet(url: str, concentrators: int) -> None:
    """A registry that knows every concentrator and meter the bench sends for."""
    from cloud.migrations import migrate
    from cloud.registry import Registry
    from cloud.registry.enums import DeviceType, Protocol
    from cloud.registry.schemas import DeviceCreate

    await migrate(url)
    async with Registry(url=url) as registry:
        for c in range(1, concentrators + 1):
            cid = f"conc-{c}"
            await registry.create_device(DeviceCreate(identification=cid, device_type=DeviceType.CONCENTRATOR,
                                                      protocol=Protocol.MQTT))
            for m in range(METERS_PER_CONCENTRATOR):
                await registry.create_device(DeviceCreate(identification=f"{cid}-m{m:04d}", protocol=Protocol.DLMS,
                                                          device_type=DeviceType.SMART_METER, concentrator_id=cid))


async def senders_cost(url: str, messages: list[Message], repeat: int = 100_000) -> float:
    """Microseconds per message of ingest's known-senders check, the registry view loaded."""
    from cloud.ingest.senders import KnownSenders
    from cloud.registry.db import create_engine

    engine = create_engine(url)
    try:
        senders = KnownSenders(engine=engine)
        await senders.refresh()
        pairs = [(m.concentrator, m.meter) for m in messages[:1000]]
        started = time.process_time()
        for i in range(repeat):
            await senders.check(*pairs[i % len(pairs)])
        return (time.process_time() - started) / repeat * 1e6
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1,b25,100", help="readings per MQTT message, one run set per shape; "
                        "bN: live batches of N meters' readings on the concentrator's batch topic")
    parser.add_argument("--readings", type=int, default=200_000, help="readings per end-to-end run")
    parser.add_argument("--properties", type=int, default=5, help="property values per reading")
    parser.add_argument("--concentrators", type=int, default=10, help="publishing concentrators")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes (concentrators shared out)")
    parser.add_argument("--ingest", default="1,2", help="ingest process counts to run, comma-separated")
    parser.add_argument("--paho", default="light", help="MQTT 5 properties in ingest: light (the fix), paho "
                        "(paho's own, as before issue 14), or both: paho,light")
    parser.add_argument("--raw-points", type=int, default=200_000, help="points for the raw InfluxDB figures")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="ingest setting for the processes, e.g. GRIDWIRE_INGEST_BATCH_READINGS=5000")
    parser.add_argument("--unconfirmed", type=int, default=1000,
                        help="messages a concentrator may have unconfirmed (the edge forwarder's max_unconfirmed)")
    parser.add_argument("--metrics", default="off", help="end-to-end runs with metrics off, on (served and "
                        "scraped every second), or both in the same run: off,on")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print it")
    parser.add_argument("--profile", action="store_true", help="ingest under cProfile (implies --keep)")
    args = parser.parse_args()
    args.keep = args.keep or args.profile
    shapes: list[int | str] = [x if x.startswith("b") else int(x) for x in args.shapes.split(",") if x]
    counts = [int(x) for x in args.ingest.split(",") if x]
    pahos = [p.strip() for p in args.paho.split(",") if p.strip()]
    modes = [m.strip() == "on" for m in args.metrics.split(",") if m.strip()]
    env = dict(item.split("=", 1) for item in args.env)
    work = Path(tempfile.mkdtemp(prefix="gridwire-bench-"))
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.keep:
        print(f"work directory: {work}")
    registry = f"sqlite+aiosqlite:///{work}/registry.sqlite"
    asyncio.run(registered_fleet(registry, args.concentrators))
    try:
        influx = LocalInfluxd(directory=work / "influxd", port=free_port())
        influx.start()
        try:
            sets = {}
            for name, derived in (("lean", True), ("full", False)):
                sample = build_messages(readings=args.raw_points, per_message=1, properties=args.properties,
                                        concentrators=args.concentrators, derived_ids=derived)
                sets[name] = [line for m in sample for line in
                              encode_payload(m.payload, meter=m.meter, concentrator_id=m.concentrator) or []]
            sets["bare"] = bare_lines(sets["lean"])
            raw = {name: raw_influx(influx, f"raw_{name}", lines) for name, lines in sets.items()}
            disk = disk_bytes_per_point(work, sets)
            for name, lines in sets.items():
                rate, cpu = raw[name]
                print(f"(a) raw InfluxDB, {name:4} ({len(lines[0]):3} B/line): {rate:9,.0f} points/s, influxd "
                      f"{cpu:5.1f} us CPU/point, {disk[name]:5.1f} B/point on disk after full compaction")
            for name in ("lean", "full"):
                print(f"    {name} / bare floats: influxd CPU {raw[name][1] / raw['bare'][1]:.2f}x, disk "
                      f"{disk[name] / disk['bare']:.2f}x (aim for the store's points: each <= 1.5x)")
            sample = build_messages(readings=args.raw_points, per_message=1, properties=args.properties,
                                    concentrators=args.concentrators)
            print(f"(d) known-senders check: {asyncio.run(senders_cost(registry, sample)):.2f} us per message "
                  f"({args.concentrators * 51} devices in the view)")
            print(f"peer: Node-RED (1 reading/message, acks before writing): {PEER['live']:,} readings/s live, "
                  f"{PEER['draining']:,} draining, ~{PEER['cpu_us']} us CPU/reading")
            for shape in shapes:
                messages = build_messages(readings=args.readings, per_message=shape, properties=args.properties,
                                          concentrators=args.concentrators)
                size = sum(len(m.payload) for m in messages) / len(messages)
                per = messages[0].readings
                kind = (f"live batches of {per} meters' readings on concentrator/{{cid}}/batch/meterReading"
                        if isinstance(shape, str) else f"{shape} reading(s) per message")
                print(f"\nshape: {kind} ({size:,.0f} B), {len(messages):,} messages, "
                      f"{args.readings:,} readings, {args.concentrators} concentrators")
                rate, broker_us = raw_broker(work, messages, args.concentrators)
                print(f"(b) raw broker, QoS 1: {rate:9,.0f} msg/s = {rate * per:,.0f} readings/s "
                      f"(mosquitto {broker_us:.1f} us CPU/message)")
                for paho, n, metrics in [(p, n, m) for p in pahos for n in counts for m in modes]:
                    tag = f"{shape}-{n}-{paho}{'-metrics' if metrics else ''}"
                    run = end_to_end(work, influx, messages, processes=n, concentrators=args.concentrators,
                                     env_extra=env, unconfirmed=args.unconfirmed, publishers=args.publishers,
                                     registry=registry, paho=paho == "paho", tag=tag, profile=args.profile,
                                     metrics=metrics)
                    report(run, shape=per, processes=n, paho=paho + (", metrics on" if metrics else ""),
                           readings=args.readings, raw_points=raw["lean"][0], raw_msgs=rate)
        finally:
            influx.stop()
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
              "(other work on the machine lowers every wall figure; CPU per reading is the steadier one)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(run, *, shape: int, processes: int, paho: str, readings: int, raw_points: float, raw_msgs: float) -> None:
    rate = readings / run.elapsed
    ingest = sum(v for k, v in run.cpu.items() if k.startswith("ingest"))
    per = {name: seconds / readings * 1e6 for name, seconds in run.cpu.items()}
    label = f"{processes} ingest process{'es' if processes > 1 else ''}, {paho} properties"
    print(f"(c) end to end, {label}: {rate:9,.0f} readings/s ({rate / shape:,.0f} msg/s); "
          f"ratio to raw InfluxDB {rate / raw_points:.2f}, to raw broker {rate / shape / raw_msgs:.2f}"
          + (f"; {rate / PEER['live']:.1f}x Node-RED live" if shape <= 25 else "")
          + f"; stored {run.stored:,} of {readings:,} in {run.elapsed:.1f} s")
    print(f"    CPU us per reading: ingest {ingest / readings * 1e6:.1f} in all ("
          + ", ".join(f"{name} {us:.1f}" for name, us in per.items()) + ")")
    if run.stored != readings:
        print(f"    MISMATCH: {run.stored} stored, {readings} sent")


if __name__ == "__main__":
    main()

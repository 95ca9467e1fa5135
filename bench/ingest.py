"""Bench: end-to-end ingest rate against the raw InfluxDB and raw broker rates of the same run.

Starts its own mosquitto (the project's configuration) and influxd on free ports, then measures:

  (a) raw InfluxDB: the very points ingest writes, pre-encoded, POSTed to /write in
      5,000-point bodies by one client (and, for reference, points of 5 float fields only);
  (b) raw broker: one paho publisher -> one paho subscriber, QoS 1, the bench's payloads;
  (c) end to end: concentrator-like publishers (MeterReadingBatch payloads, ``gw-seq`` user
      property, QoS 1) -> mosquitto -> N ingest processes (``gridwire cloud ingest``, real
      processes) -> influxd; done when every message's DeliveryAck came back, then the stored
      count is checked in influxd.

    .venv/bin/python bench/ingest.py                       # defaults: 200,000 readings, N = 1 and 2
    .venv/bin/python bench/ingest.py --readings 50000 --per-message 100 --properties 5 --ingest 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from broker import topics  # noqa: E402
from broker.mosquitto_conf import Account  # noqa: E402
from broker.schemas import SEQ_PROPERTY, DeliveryAck  # noqa: E402
from broker.session import MqttSession, publish_properties  # noqa: E402
from cloud.ingest.fast_encode import encode_payload  # noqa: E402
from gridwire.procs import ManagedProcess, free_port  # noqa: E402
from gridwire.services import LocalInfluxd, LocalMosquitto  # noqa: E402

CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROFILE = False  # --profile: each ingest process writes a cProfile file into the work directory
NAMESPACE = uuid.UUID("0b8f5f2e-3c1d-4b8e-9a0f-6d2c1e4b7a90")


@dataclass(frozen=True)
class Message:
    concentrator: str
    topic: str
    payload: bytes
    readings: int


def build_messages(*, readings: int, per_message: int, properties: int, concentrators: int,
                   meters_per_concentrator: int = 50) -> list[Message]:
    """Distinct readings, ``per_message`` of one meter per message, spread over concentrators."""
    messages: list[Message] = []
    counters: dict[str, int] = {}
    index = 0
    while index * per_message < readings:
        count = min(per_message, readings - index * per_message)
        cid = f"conc-{index % concentrators + 1}"
        meter = f"{cid}-m{(index // concentrators) % meters_per_concentrator:04d}"
        start = counters.get(meter, 0)
        counters[meter] = start + count
        batch = []
        for k in range(start, start + count):
            when = (T0 + timedelta(minutes=15 * k)).isoformat()
            batch.append({
                "meterReadingIdentifier": str(uuid.uuid5(NAMESPACE, f"{meter}|{k}")),
                "readingTime": when,
                "propertyValues": [{"unit": "kWh", "date": when, "numericalValue": 1000.0 + k * 0.25 + p,
                                    "operationalPropertyDefinition": {"propertyId": f"OBIS_1.8.{p}"}}
                                   for p in range(properties)],
                "meterIndividual": {"meterIndividualId": meter,
                                    "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
            })
        payload = json.dumps({"meterReadings": batch}, separators=(",", ":")).encode()
        messages.append(Message(cid, topics.concentrator_meter_message(cid, meter, "meterReading"), payload, count))
        index += 1
    return messages


def influx_query(url: str, q: str, db: str | None = None) -> dict:
    params = {"q": q, **({"db": db} if db else {})}
    response = httpx.post(f"{url}/query", data=params, timeout=60)
    response.raise_for_status()
    return response.json()


def stored_count(url: str, db: str) -> int:
    doc = influx_query(url, 'SELECT count("reading_id") FROM meter_reading', db)
    series = doc["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def raw_influx(url: str, db: str, lines: list[str], batch: int = 5000) -> float:
    """Points/s writing ``lines`` in ``batch``-point bodies, one client, one request at a time."""
    influx_query(url, f'CREATE DATABASE "{db}"')
    bodies = ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]
    with httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            client.post("/write", params={"db": db, "precision": "ns"}, content=body).raise_for_status()
        elapsed = time.perf_counter() - started
    # Dropped at once, so its snapshot and compaction do not run during the next measurement.
    influx_query(url, f'DROP DATABASE "{db}"')
    return len(lines) / elapsed


def plain_lines(count: int, fields: int) -> list[str]:
    """Points of ``fields`` float fields, one series per 50 meters (the MISSION's raw figure's shape)."""
    base = 1_767_225_600_000_000_000
    return [f"plain,meter=m{i % 50} " + ",".join(f"f{k}={1000.0 + i + k}" for k in range(fields))
            + f" {base + i * 1_000_000_000}" for i in range(count)]


def raw_broker(server: LocalMosquitto, messages: list[Message]) -> float:
    """Messages/s from one paho publisher to one paho subscriber, QoS 1, MQTT 5."""
    topic = messages[0].topic
    done = threading.Event()
    received = 0

    def on_message(_c, _u, _m) -> None:
        nonlocal received
        received += 1
        if received == len(messages):
            done.set()

    subscribed = threading.Event()
    sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=paho.MQTTv5)
    sub.username_pw_set(CLOUD.username, CLOUD.password)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(server.host, server.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    pub.username_pw_set(**_creds(server, messages[0].concentrator))
    pub.max_inflight_messages_set(100)
    pub.connect(server.host, server.port)
    pub.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("raw broker subscriber never subscribed")
    started = time.perf_counter()
    infos = [pub.publish(topic, m.payload, qos=1) for m in messages]
    if not done.wait(300):
        raise RuntimeError(f"raw broker: only {received} of {len(messages)} arrived")
    elapsed = time.perf_counter() - started
    for info in infos[-1:]:
        info.wait_for_publish(10)
    for client in (pub, sub):
        client.disconnect()
        client.loop_stop()
    return len(messages) / elapsed


def _creds(server: LocalMosquitto, username: str) -> dict[str, str]:
    return server.credentials(username)


def warm_up_payload(message: Message) -> bytes:
    doc = json.loads(message.payload)["meterReadings"][0]
    doc["readingTime"] = "2000-01-01T00:00:00+00:00"
    for value in doc["propertyValues"]:
        value["date"] = doc["readingTime"]
    doc["meterReadingIdentifier"] = str(uuid.uuid5(NAMESPACE, f"warm-up|{message.concentrator}"))
    return json.dumps(doc).encode()


async def publish_all(server: LocalMosquitto, messages: list[Message], concentrators: int,
                      on_warm: Callable[[], None] = lambda: None, unconfirmed: int = 0) -> float:
    """Publish like concentrators (gw-seq, QoS 1) and return seconds until every seq was confirmed;
    ``on_warm`` is called once ingest confirmed the warm-up messages, just before the clock starts."""
    by_cid: dict[str, list[Message]] = {}
    for m in messages:
        by_cid.setdefault(m.concentrator, []).append(m)
    sessions = {cid: MqttSession(client_id=f"bench-{cid}-{uuid.uuid4().hex[:6]}", host=server.host,
                                 port=server.port, max_inflight=200, clean_start=True, session_expiry=0,
                                 **server.credentials(cid)) for cid in by_cid}
    pending = {cid: set(range(1, len(ms) + 1)) for cid, ms in by_cid.items()}
    # Like the edge forwarder's max_unconfirmed: a concentrator sends more only while fewer
    # than ``unconfirmed`` of its messages wait for the cloud's DeliveryAck (0: no bound).
    room = {cid: asyncio.Semaphore(unconfirmed or len(ms) + 1) for cid, ms in by_cid.items()}
    warm = {cid: asyncio.Event() for cid in by_cid}
    all_done = asyncio.Event()

    def ack_handler(cid: str):
        async def on_ack(message) -> None:
            seqs = DeliveryAck.model_validate_json(message.payload).expand()
            if 0 in seqs:
                warm[cid].set()
            for _ in pending[cid].intersection(seqs):
                room[cid].release()
            pending[cid].difference_update(seqs)
            if not any(pending.values()):
                all_done.set()
        return on_ack

    for cid, session in sessions.items():
        await session.connect()
        await session.subscribe(topics.concentrator_ack(cid), ack_handler(cid))
    # A warm-up message per concentrator (seq 0, one reading outside the measured set), sent
    # again each second until confirmed: the confirmation says ingest is subscribed and writing
    # (a message published before any ingest subscribed goes nowhere).
    deadline = time.monotonic() + 120
    while not all(e.is_set() for e in warm.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("ingest never confirmed the warm-up messages")
        for cid, session in sessions.items():
            if not warm[cid].is_set():
                await session.publish(by_cid[cid][0].topic, warm_up_payload(by_cid[cid][0]), qos=1,
                                      properties=publish_properties(user_properties={SEQ_PROPERTY: "0"}))
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in warm.values())), 1.0)
        except TimeoutError:
            pass

    async def send(cid: str, seq: int, message: Message) -> None:
        await sessions[cid].publish(message.topic, message.payload, qos=1,
                                    properties=publish_properties(user_properties={SEQ_PROPERTY: str(seq)}))

    async def run(cid: str) -> None:
        sends = []
        for seq, message in enumerate(by_cid[cid], start=1):
            await room[cid].acquire()
            sends.append(asyncio.create_task(send(cid, seq, message)))
        await asyncio.gather(*sends)

    on_warm()
    started = time.perf_counter()
    await asyncio.gather(*(run(cid) for cid in by_cid))
    await asyncio.wait_for(all_done.wait(), 600)
    elapsed = time.perf_counter() - started
    for session in sessions.values():
        await session.close()
    return elapsed


def end_to_end(work: Path, influx: LocalInfluxd, messages: list[Message], *, processes: int,
               concentrators: int, env_extra: dict[str, str], unconfirmed: int,
               metrics: bool = False) -> tuple[float, int]:
    """Seconds for ``messages`` to go through ``processes`` ingest processes, and the stored count.
    With ``metrics`` each process serves Prometheus metrics and is scraped every second meanwhile."""
    tag = f"{processes}{'-metrics' if metrics else ''}"
    server = start_broker(work / f"mosquitto-e2e-{tag}", concentrators)
    db = f"e2e_{tag.replace('-', '_')}"
    influx_query(influx.url, f'CREATE DATABASE "{db}"')
    ingests = []
    scraped: list[str] = []
    scraping = threading.Event()
    scraper = threading.Thread(target=_scrape, args=(scraped, scraping), name="bench-scraper", daemon=True)
    try:
        for i in range(processes):
            env = {"GRIDWIRE_MQTT_HOST": server.host, "GRIDWIRE_MQTT_PORT": str(server.port),
                   "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
                   "GRIDWIRE_MQTT_CLIENT_ID": f"bench-ingest-{tag}-{i}", "GRIDWIRE_INFLUX_URL": influx.url,
                   "GRIDWIRE_INFLUX_DATABASE": db,
                   "GRIDWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{work}/dead-{tag}-{i}.sqlite",
                   "PYTHONPATH": str(ROOT), **env_extra}
            if metrics:
                env["GRIDWIRE_METRICS_PORT"] = str(free_port())
                scraped.append(f"http://127.0.0.1:{env['GRIDWIRE_METRICS_PORT']}/metrics")
            profile = ["-m", "cProfile", "-o", str(work / f"ingest-{processes}-{i}.prof")] if PROFILE else []
            proc = ManagedProcess(argv=[sys.executable, *profile, "-m", "gridwire.cli", "cloud", "ingest",
                                        "--log-level", "WARNING"],
                                  log=work / f"ingest-{processes}-{i}.log", env=env, cwd=ROOT)
            proc.start()
            ingests.append(proc)
        pids = {"ingest": [p.proc.pid for p in ingests if p.proc], "influxd": [influx.process.proc.pid],
                "mosquitto": [server.process.proc.pid]}
        before: dict[str, float] = {}

        def snapshot() -> None:
            # After the warm-up: the processes' start-up (imports, connecting) is not counted.
            before.update({name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()})
            before["ingest system"] = sum(cpu_seconds(pid, system_only=True) for pid in pids["ingest"])
            before["bench publishers"] = time.process_time()

        if scraped:
            scraper.start()
        elapsed = asyncio.run(publish_all(server, messages, concentrators, on_warm=snapshot, unconfirmed=unconfirmed))
        scraping.set()
        cpu = {name: sum(cpu_seconds(pid) for pid in group) - before[name] for name, group in pids.items()}
        cpu["bench publishers"] = time.process_time() - before["bench publishers"]
        ingest_system = sum(cpu_seconds(pid, system_only=True) for pid in pids["ingest"]) - before["ingest system"]
        readings = sum(m.readings for m in messages)
        print(f"    CPU seconds during the {processes}-process run ({elapsed:.1f} s): "
              + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
              + f" (ingest in the kernel {ingest_system:.1f})"
              + f"; per reading: ingest {cpu['ingest'] / readings * 1e6:.1f} us, influxd "
              f"{cpu['influxd'] / readings * 1e6:.1f} us")
        # Every message confirmed means stored; the count (minus warm-up readings) says exactly once.
        count = stored_count(influx.url, db) - concentrators
        influx_query(influx.url, f'DROP DATABASE "{db}"')  # no compaction of it during the next run
        return elapsed, count
    finally:
        scraping.set()
        if scraper.is_alive():
            scraper.join()
        for proc in ingests:
            proc.stop()
        server.stop()


def _scrape(urls: list[str], done: threading.Event) -> None:
    """What Prometheus does: GET every process's /metrics once a second until ``done``."""
    with httpx.Client(timeout=5) as client:
        while not done.wait(1.0):
            for url in urls:
                with contextlib.suppress(httpx.HTTPError):
                    client.get(url)


def cpu_seconds(pid: int, *, system_only: bool = False) -> float:
    """User + system (or only system) CPU seconds a process used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[12]) if system_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_broker(directory: Path, concentrators: int) -> LocalMosquitto:
    accounts = [CLOUD] + [Account(username=f"conc-{i}", password=f"conc-{i}-pw", role="concentrator")
                          for i in range(1, concentrators + 1)]
    server = LocalMosquitto(directory=directory, port=free_port(), accounts=accounts)
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000, help="readings per end-to-end run")
    parser.add_argument("--per-message", type=int, default=100, help="readings per MQTT message (a batch)")
    parser.add_argument("--properties", type=int, default=5, help="property values per reading")
    parser.add_argument("--concentrators", type=int, default=4, help="publishing concentrators")
    parser.add_argument("--ingest", default="1,2", help="ingest process counts to run, comma-separated")
    parser.add_argument("--raw-points", type=int, default=200_000, help="points for the raw InfluxDB rate")
    parser.add_argument("--raw-messages", type=int, default=0, help="messages for the raw broker rate "
                        "(default: as many as the end-to-end run publishes)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="ingest setting for the processes, e.g. GRIDWIRE_INGEST_BATCH_READINGS=5000")
    parser.add_argument("--unconfirmed", type=int, default=1000,
                        help="messages a publisher may have unconfirmed, like the edge forwarder's "
                             "max_unconfirmed (default: its default; 0: no bound)")
    parser.add_argument("--metrics", default="off", help="end-to-end runs with metrics off, on (served and "
                        "scraped every second), or both in the same run: off,on")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print it")
    parser.add_argument("--profile", action="store_true", help="run ingest under cProfile (implies --keep)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    args.keep = args.keep or args.profile

    messages = build_messages(readings=args.readings, per_message=args.per_message, properties=args.properties,
                              concentrators=args.concentrators)
    payload_bytes = sum(len(m.payload) for m in messages) / len(messages)
    print(f"workload: {args.readings} readings, {len(messages)} messages of {args.per_message} readings "
          f"x {args.properties} properties ({payload_bytes / 1024:.1f} KiB each), {args.concentrators} concentrators")
    work = Path(tempfile.mkdtemp(prefix="gridwire-bench-"))
    if args.keep:
        print(f"work directory: {work}")
    try:
        influx = LocalInfluxd(directory=work / "influxd", port=free_port())
        influx.start()
        try:
            # The very points the end-to-end runs write (the same meters, concentrators and order).
            raw_messages = build_messages(readings=args.raw_points, per_message=args.per_message,
                                          properties=args.properties, concentrators=args.concentrators)
            lines = [line for m in raw_messages for line in
                     encode_payload(m.payload, meter=topics.parse(m.topic).meter, concentrator_id=m.concentrator) or []]
            influx_pid = influx.process.proc.pid
            cpu_before = cpu_seconds(influx_pid)
            raw_points = raw_influx(influx.url, "raw", lines)
            raw_cpu = (cpu_seconds(influx_pid) - cpu_before) / len(lines) * 1e6
            plain = raw_influx(influx.url, "plain", plain_lines(args.raw_points, args.properties))
            print(f"(a) raw InfluxDB, ingest's points ({len(lines[0])} B/line): {raw_points:10,.0f} points/s "
                  f"(influxd {raw_cpu:.1f} us of CPU per point)")
            print(f"    raw InfluxDB, {args.properties} float fields only:       {plain:10,.0f} points/s (reference)")

            broker = start_broker(work / "mosquitto-raw", 1)
            try:
                count = args.raw_messages or len(messages)
                sample = [m for m in build_messages(readings=count * args.per_message, per_message=args.per_message,
                                                     properties=args.properties, concentrators=1)][:count]
                raw_msgs = raw_broker(broker, sample)
            finally:
                broker.stop()
            print(f"(b) raw broker, QoS 1, {payload_bytes / 1024:.1f} KiB messages: {raw_msgs:10,.0f} msg/s "
                  f"= {raw_msgs * args.per_message:,.0f} readings/s")

            results = []
            modes = [m.strip() == "on" for m in args.metrics.split(",") if m.strip()]
            for n in [int(x) for x in args.ingest.split(",") if x]:
                for metrics in modes:
                    elapsed, stored = end_to_end(work, influx, messages, processes=n, concentrators=args.concentrators,
                                                 env_extra=dict(item.split("=", 1) for item in args.env),
                                                 unconfirmed=args.unconfirmed, metrics=metrics)
                    results.append((n, metrics, elapsed, stored))
            # The machine may be busier or quieter later: measure (a) again and compare with the
            # higher of the two, so a ratio is never flattered by a slow first measurement.
            again = raw_influx(influx.url, "raw_again", lines)
            print(f"(a) raw InfluxDB again, after the end-to-end runs:  {again:10,.0f} points/s")
            raw_points = max(raw_points, again)
            for n, metrics, elapsed, stored in results:
                rate = args.readings / elapsed
                print(f"(c) end to end, {n} ingest process{'es' if n > 1 else ''}"
                      f"{', metrics on' if metrics else ''}: {rate:10,.0f} readings/s, "
                      f"{rate * args.properties:,.0f} property values/s, {len(messages) / elapsed:,.0f} msg/s; "
                      f"ratio to (a) {rate / raw_points:.2f}, to (b) {len(messages) / elapsed / raw_msgs:.2f}; "
                      f"stored {stored} of {args.readings} ({elapsed:.1f} s)")
                if stored != args.readings:
                    print(f"    MISMATCH: {stored} stored, {args.readings} sent")
            by = {(n, metrics): elapsed for n, metrics, elapsed, _ in results}
            for n in sorted({n for n, _ in by}):
                if (n, True) in by and (n, False) in by:
                    print(f"(d) metrics on / off, {n} ingest process{'es' if n > 1 else ''}: "
                          f"{by[(n, False)] / by[(n, True)]:.2f} of the throughput")
        finally:
            influx.stop()
        print(f"load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs (other work on the machine lowers every figure)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

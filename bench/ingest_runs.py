"""The measurements of ``bench/ingest.py``: raw InfluxDB (rate, CPU and disk per point), raw
broker at a message shape, and ingest end to end with its processes' CPU."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import mqtt_raw
from broker.mosquitto_conf import Account
from gridwire.procs import ManagedProcess, free_port
from gridwire.services import LocalInfluxd, LocalMosquitto

ROOT = Path(__file__).resolve().parent.parent
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")
# Ingest with paho's own MQTT 5 properties, as before issue 14 (``--paho paho``).
_PAHO_PROPERTIES = ("import bench.paho_before as b; b.apply(); from gridwire.cli import main; "
                    "import sys; sys.argv[0] = 'gridwire'; main()")
# CPU time, not wall time: on a loaded machine a wall-clock profile charges whatever ran when
# the process was descheduled.
_PROFILED = ("import cProfile, sys, time\nif {before}:\n    import bench.paho_before as b; b.apply()\n"
             "from gridwire.cli import main\nsys.argv[0] = 'gridwire'\nprofile = cProfile.Profile(time.process_time)\n"
             "profile.enable()\ntry:\n    main()\nfinally:\n    profile.disable(); profile.dump_stats({path!r})")


@dataclass(frozen=True)
class Message:
    concentrator: str
    meter: str
    topic: str
    payload: bytes
    readings: int


def cpu_seconds(pid: int, *, system_only: bool = False) -> float:
    """User + system (or only system) CPU seconds a process used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[12]) if system_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def influx_query(url: str, q: str, db: str | None = None) -> dict:
    params = {"q": q, **({"db": db} if db else {})}
    response = httpx.post(f"{url}/query", data=params, timeout=60)
    response.raise_for_status()
    return response.json()


def raw_influx(influx: LocalInfluxd, db: str, lines: list[str], batch: int = 5000) -> tuple[float, float]:
    """(points/s, influxd CPU us per point) writing ``lines`` in ``batch``-point bodies, one client."""
    influx_query(influx.url, f'CREATE DATABASE "{db}"')
    bodies = ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]
    pid = influx.process.proc.pid
    cpu = cpu_seconds(pid)
    with httpx.Client(base_url=influx.url, timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            client.post("/write", params={"db": db, "precision": "ns"}, content=body).raise_for_status()
        elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu
    # Dropped at once, so its snapshot and compaction do not run during the next measurement.
    influx_query(influx.url, f'DROP DATABASE "{db}"')
    return len(lines) / elapsed, cpu / len(lines) * 1e6


def disk_bytes_per_point(work: Path, sets: dict[str, list[str]]) -> dict[str, float]:
    """Bytes on disk per point of each set of lines once influxd fully compacted its shard: a
    separate influxd whose cold shards are snapshotted and fully compacted after a second."""
    influx = LocalInfluxd(directory=work / "influxd-disk", port=free_port())
    config = influx.config_file.read_text().replace(
        "[data]\n", '[data]\n  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "1s"\n')
    influx.config_file.write_text(config)
    influx.start()
    try:
        out = {}
        with httpx.Client(base_url=influx.url, timeout=60) as client:
            for name, lines in sets.items():
                influx_query(influx.url, f'CREATE DATABASE "{name}"')
                for i in range(0, len(lines), 5000):
                    client.post("/write", params={"db": name, "precision": "ns"},
                                content="\n".join(lines[i:i + 5000]).encode()).raise_for_status()
        for name, lines in sets.items():
            out[name] = _compacted_size(influx.directory / "data" / name, influx.directory / "wal" / name) / len(lines)
        return out
    finally:
        influx.stop()


def _compacted_size(data: Path, wal: Path, timeout: float = 120.0) -> int:
    """The data directory's size once the WAL is empty and each shard is one TSM file, stable."""
    deadline, last, stable = time.monotonic() + timeout, -1, 0
    while time.monotonic() < deadline:
        wal_bytes = sum(f.stat().st_size for f in wal.rglob("*.wal")) if wal.exists() else 0
        tsm = list(data.rglob("*.tsm"))
        shards = {f.parent for f in tsm}
        size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
        if wal_bytes == 0 and tsm and len(tsm) == len(shards) and not list(data.rglob("*.tmp")):
            stable = stable + 1 if size == last else 0
            if stable >= 3:
                return size
        last = size
        time.sleep(0.5)
    raise RuntimeError(f"influxd never fully compacted {data}")


def start_broker(directory: Path, concentrators: int) -> LocalMosquitto:
    accounts = [CLOUD] + [Account(username=f"conc-{i}", password=f"conc-{i}-pw", role="concentrator")
                          for i in range(1, concentrators + 1)]
    server = LocalMosquitto(directory=directory, port=free_port(), accounts=accounts)
    server.start()
    return server


def raw_broker(work: Path, messages: list[Message], concentrators: int) -> tuple[float, float]:
    """(messages/s, broker CPU us per message): pre-framed QoS 1 publishers (one process) ->
    Mosquitto -> one subscriber that PUBACKs each, at the bench's own message shape."""
    server = start_broker(work / f"mosquitto-raw-{time.monotonic_ns()}", concentrators)
    try:
        ctx = multiprocessing.get_context("fork")
        ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        topic_filter = ("concentrator/+/batch/meterReading" if messages[0].topic.endswith("/batch/meterReading")
                        else "concentrator/+/smartMeterMessage/+/+")
        sub = ctx.Process(target=mqtt_raw.subscribe, args=(server.host, server.port, CLOUD.username,
                                                           CLOUD.password, topic_filter, len(messages), ready,
                                                           results))
        sub.start()
        ready.get(timeout=30)
        pubs = _publishers(ctx, server, messages, processes=1, unconfirmed=10**9, ready=ready, start=start,
                           results=results, raw=True)
        for _ in pubs:
            ready.get(timeout=60)
        broker_cpu = cpu_seconds(server.process.proc.pid)
        began = time.monotonic()
        start.set()
        ends = [results.get(timeout=600) for _ in range(len(pubs) + 1)]
        elapsed = max(end for end, _cpu in ends) - began
        broker_cpu = cpu_seconds(server.process.proc.pid) - broker_cpu
        for proc in (sub, *pubs):
            proc.join(10)
        return len(messages) / elapsed, broker_cpu / len(messages) * 1e6
    finally:
        server.stop()


def _publishers(ctx, server: LocalMosquitto, messages: list[Message], *, processes: int, unconfirmed: int,
                ready, start, results, raw: bool = False) -> list:
    by_cid: dict[str, list[Message]] = {}
    for m in messages:
        by_cid.setdefault(m.concentrator, []).append(m)
    concs = [mqtt_raw.Concentrator(cid=cid, password=server.credentials(cid)["password"],
                                   messages=[(m.topic, m.payload) for m in ms],
                                   warm_up=(warm_up_topic(ms[0]), warm_up_payload(ms[0])),
                                   counts=[m.readings for m in ms] if ms[0].topic.endswith("/batch/meterReading")
                                   else None)
             for cid, ms in sorted(by_cid.items())]
    procs = []
    for n in range(processes):
        share = concs[n::processes]
        if not share:
            continue
        proc = ctx.Process(target=mqtt_raw.publish, args=(server.host, server.port, share),
                           kwargs={"unconfirmed": unconfirmed, "ready": ready, "start": start, "results": results,
                                   "confirmed": not raw})
        proc.start()
        procs.append(proc)
    return procs


def warm_up_topic(message: Message) -> str:
    """Where the warm-up reading goes: its meter's own topic (a live batch's first meter's)."""
    return f"concentrator/{message.concentrator}/smartMeterMessage/{message.meter}/meterReading"


def warm_up_payload(message: Message) -> bytes:
    """One reading outside the measured set, in 2000, for the message's meter."""
    import json
    import uuid

    doc = json.loads(message.payload)
    first = (doc.get("meterReadings") or [doc])[0]
    first["readingTime"] = "2000-01-01T00:00:00+00:00"
    for value in first["propertyValues"]:
        value["date"] = first["readingTime"]
    first["meterReadingIdentifier"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"warm-up|{message.concentrator}"))
    return json.dumps(first).encode()


@dataclass
class Run:
    elapsed: float
    stored: int
    cpu: dict[str, float]  # CPU seconds during the run, by part (each ingest process on its own)


def end_to_end(work: Path, influx: LocalInfluxd, messages: list[Message], *, processes: int, concentrators: int,
               env_extra: dict[str, str], unconfirmed: int, publishers: int, registry: str | None,
               paho: bool = False, tag: str = "", profile: bool = False, metrics: bool = False) -> Run:
    """``messages`` through ``processes`` ingest processes: seconds from the first publish to the
    last confirmation, readings stored, and each part's CPU seconds meanwhile. With ``metrics``
    each process serves Prometheus metrics and is scraped every second meanwhile."""
    server = start_broker(work / f"mosquitto-e2e-{tag}", concentrators)
    db = f"e2e_{tag}".replace("-", "_").replace(",", "_")
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
                   "GRIDWIRE_INFLUX_DATABASE": db, "PYTHONPATH": str(ROOT), **env_extra}
            if registry is not None:
                env["GRIDWIRE_DATABASE_URL"] = registry
            else:
                env["GRIDWIRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{work}/dead-{tag}-{i}.sqlite"
                env["GRIDWIRE_INGEST_UNKNOWN_SENDERS"] = "accept"
            if metrics:
                env["GRIDWIRE_METRICS_PORT"] = str(free_port())
                scraped.append(f"http://127.0.0.1:{env['GRIDWIRE_METRICS_PORT']}/metrics")
            entry = ["-c", _PAHO_PROPERTIES] if paho else ["-m", "gridwire.cli"]
            if profile:  # a CPU-time cProfile of the process, kept in the work directory
                entry = ["-c", _PROFILED.format(path=str(work / f"ingest-{tag}-{i}.prof"), before=paho)]
            proc = ManagedProcess(argv=[sys.executable, *entry, "cloud", "ingest", "--log-level", "WARNING"],
                                  log=work / f"ingest-{tag}-{i}.log", env=env, cwd=ROOT)
            proc.start()
            ingests.append(proc)
        ctx = multiprocessing.get_context("fork")
        ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        pubs = _publishers(ctx, server, messages, processes=publishers, unconfirmed=unconfirmed, ready=ready,
                           start=start, results=results)
        for _ in pubs:
            ready.get(timeout=180)
        # After the warm-up: the processes' start-up (imports, connecting) is not counted.
        pids = {f"ingest {i + 1}": p.proc.pid for i, p in enumerate(ingests) if p.proc}
        pids |= {"influxd": influx.process.proc.pid, "mosquitto": server.process.proc.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if scraped:
            scraper.start()
        began = time.monotonic()
        start.set()
        ends = [results.get(timeout=900) for _ in pubs]
        elapsed = max(end for end, _cpu in ends) - began
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu["publishers"] = sum(c for _end, c in ends)
        for proc in pubs:
            proc.join(10)
        # Every message confirmed means stored; the count (minus warm-up readings) says exactly once.
        count = stored_count(influx.url, db) - concentrators
        influx_query(influx.url, f'DROP DATABASE "{db}"')  # no compaction of it during the next run
        return Run(elapsed=elapsed, stored=count, cpu=cpu)
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


def stored_count(url: str, db: str) -> int:
    doc = influx_query(url, 'SELECT count("historical") FROM meter_reading', db)
    series = doc["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0

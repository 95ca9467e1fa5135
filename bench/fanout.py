"""Bench: what the fan-out to apps costs ingest, and what it costs per delivered message (issue 19).

At the live shape (one bare MeterReading per message), the same readings go end to end twice in
one run: fan-out off (ingest alone) and fan-out on (ingest, one ``gridwire cloud fanout`` process
and 10 organisations' apps subscribed, each meter readable by 1 or 2 of them). Each run starts its
own Mosquitto (the project's configuration, with the apps' accounts) and uses one influxd.

Printed per run: ingest's readings/s (first publish to the last confirmation at the
concentrators) and CPU us per reading of every process; with fan-out on also the time until every
app received its readings, and the fan-out's CPU us per delivered message (its CPU from the first
publish until the apps have everything, over the messages it published: its own count).

Publishers and app subscribers are bench/mqtt_raw.py's pre-framed clients in their own processes,
so they are not the limit. The apps count the messages they expect (a warm-up reading per
concentrator, readable by its orgs too, may end a count a message or two early).

    .venv/bin/python bench/fanout.py                       # 50,000 readings, fan-out off then on
    .venv/bin/python bench/fanout.py --readings 20000 --modes on
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import mqtt_raw  # noqa: E402
from bench.ingest import METERS_PER_CONCENTRATOR, build_messages, registered_fleet  # noqa: E402
from bench.ingest_runs import CLOUD, Message, _publishers, cpu_seconds, influx_query  # noqa: E402
from broker import topics  # noqa: E402
from broker.mosquitto_conf import Account  # noqa: E402
from gridwire.procs import ManagedProcess, free_port  # noqa: E402
from gridwire.services import LocalInfluxd, LocalMosquitto  # noqa: E402

_SUMMARY = re.compile(r"(\d+) readings republished in (\d+) messages, (\d+) not republished")


def readers(meter_index: int, orgs: int) -> list[str]:
    """The organisations that may read the ``meter_index``-th meter: one, and every other meter a second."""
    first = meter_index % orgs
    chosen = [first] + ([(first + 1) % orgs] if meter_index % 2 == 0 else [])
    return [f"org-{n + 1}" for n in chosen]


async def authorise(url: str, concentrators: int, orgs: int) -> dict[str, list[str]]:
    """Organisations and their MONITORING authorisations in the registry; meter -> its readers."""
    from cloud.registry import Registry
    from cloud.registry.functions import FunctionGroup
    from cloud.registry.schemas import OrganisationCreate

    by_meter: dict[str, list[str]] = {}
    async with Registry(url=url) as registry:
        for n in range(1, orgs + 1):
            await registry.add_organisation(OrganisationCreate(identification=f"org-{n}", name=f"org-{n}"))
        index = 0
        for c in range(1, concentrators + 1):
            for m in range(METERS_PER_CONCENTRATOR):
                meter = f"conc-{c}-m{m:04d}"
                by_meter[meter] = readers(index, orgs)
                for org in by_meter[meter]:
                    await registry.grant(meter, org, FunctionGroup.MONITORING)
                index += 1
    return by_meter


async def access_refresh(work: Path, meters: int, orgs: int) -> tuple[float, float, int]:
    """Seconds one read of the authorisation view takes with ``meters`` meters (1.5 readers
    each, as in the runs), rows written in bulk into a registry of its own; seconds a refresh
    takes when nothing changed; meters readable."""
    from sqlalchemy import insert

    from cloud.fanout.access import ReadingAccess
    from cloud.migrations import migrate
    from cloud.registry.db import create_engine
    from cloud.registry.enums import DeviceType, Protocol
    from cloud.registry.functions import FunctionGroup
    from cloud.registry.models import Device, DeviceAuthorisation, Organisation

    url = f"sqlite+aiosqlite:///{work}/access-{meters}.sqlite"
    await migrate(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Organisation), [{"id": n, "identification": f"org-{n}", "name": f"org-{n}"}
                                                      for n in range(1, orgs + 1)])
            await conn.execute(insert(Device), [{"id": i + 1, "identification": f"m{i}", "device_type": DeviceType.SMART_METER,
                                                 "protocol": Protocol.DLMS} for i in range(meters)])
            await conn.execute(insert(DeviceAuthorisation), [
                {"device_id": i + 1, "organisation_id": int(org.split("-")[1]), "function_group": FunctionGroup.MONITORING}
                for i in range(meters) for org in readers(i, orgs)])
        access = ReadingAccess(engine=engine)
        started = time.monotonic()
        await access.refresh()
        elapsed = time.monotonic() - started
        started = time.monotonic()
        await access.refresh()
        unchanged = time.monotonic() - started
        return elapsed, unchanged, sum(1 for i in range(meters) if access.readers(f"m{i}"))
    finally:
        await engine.dispose()


@dataclass
class Run:
    ingest_elapsed: float
    apps_elapsed: float | None
    stored: int
    delivered: int | None
    cpu: dict[str, float]


def start_broker(directory: Path, concentrators: int, orgs: int) -> LocalMosquitto:
    accounts = [CLOUD, *(Account(username=f"conc-{i}", password=f"conc-{i}-pw", role="concentrator")
                         for i in range(1, concentrators + 1)),
                *(Account(username=f"app.org-{n}", password=f"org-{n}-pw", role="app", subject=f"org-{n}")
                  for n in range(1, orgs + 1))]
    server = LocalMosquitto(directory=directory, port=free_port(), accounts=accounts)
    server.start()
    return server


def stored_count(url: str, db: str) -> int:
    """Points stored: the largest per-field count (the lean store keeps no reading id field)."""
    doc = influx_query(url, "SELECT count(*) FROM meter_reading", db)
    series = doc["results"][0].get("series", [])
    return max((v for v in series[0]["values"][0][1:] if isinstance(v, int)), default=0) if series else 0


PROFILE = False


def cloud_process(name: str, server: LocalMosquitto, influx: LocalInfluxd, db: str, registry: str,
                  work: Path) -> ManagedProcess:
    env = {"GRIDWIRE_MQTT_HOST": server.host, "GRIDWIRE_MQTT_PORT": str(server.port),
           "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
           "GRIDWIRE_MQTT_CLIENT_ID": f"bench-{name}-{db}", "GRIDWIRE_INFLUX_URL": influx.url,
           "GRIDWIRE_INFLUX_DATABASE": db, "GRIDWIRE_DATABASE_URL": registry, "PYTHONPATH": str(ROOT)}
    entry = ["-m", "cProfile", "-o", str(work / f"{name}-{db}.prof")] if PROFILE and name == "fanout" else []
    proc = ManagedProcess(argv=[sys.executable, *entry, "-m", "gridwire.cli", "cloud", name, "--log-level", "INFO"],
                          log=work / f"{name}-{db}.log", env=env, cwd=ROOT)
    proc.start()
    return proc


def wait_logged(proc: ManagedProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text(errors="replace"):
        if not proc.running or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.argv[-3]} never logged {text!r}:\n{proc.log.read_text()[-3000:]}")
        time.sleep(0.1)


def end_to_end(work: Path, influx: LocalInfluxd, messages: list[Message], *, fanout: bool, concentrators: int,
               orgs: int, by_meter: dict[str, list[str]], registry: str, publishers: int, unconfirmed: int) -> Run:
    tag = "on" if fanout else "off"
    server = start_broker(work / f"mosquitto-{tag}", concentrators, orgs)
    db = f"fanout_{tag}"
    influx_query(influx.url, f'CREATE DATABASE "{db}"')
    procs: dict[str, ManagedProcess] = {}
    subscribers = []
    try:
        procs["ingest"] = cloud_process("ingest", server, influx, db, registry, work)
        wait_logged(procs["ingest"], "subscribed to")
        if fanout:
            procs["fanout"] = cloud_process("fanout", server, influx, db, registry, work)
            wait_logged(procs["fanout"], "republishing stored readings")
        ctx = multiprocessing.get_context("fork")
        ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        app_results = ctx.Queue()
        if fanout:
            expected = {f"org-{n}": 0 for n in range(1, orgs + 1)}
            for message in messages:
                for org in by_meter[message.meter]:
                    expected[org] += 1
            for org, count in expected.items():
                sub = ctx.Process(target=mqtt_raw.subscribe, args=(
                    server.host, server.port, f"app.{org}", f"{org}-pw", topics.app_readings(org), count, ready,
                    app_results))
                sub.start()
                subscribers.append(sub)
            for _ in subscribers:
                ready.get(timeout=60)
        pubs = _publishers(ctx, server, messages, processes=publishers, unconfirmed=unconfirmed, ready=ready,
                           start=start, results=results)
        for _ in pubs:
            ready.get(timeout=180)
        pids = {name: p.proc.pid for name, p in procs.items() if p.proc}
        pids |= {"influxd": influx.process.proc.pid, "mosquitto": server.process.proc.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        began = time.monotonic()
        start.set()
        ends = [results.get(timeout=900) for _ in pubs]
        ingest_elapsed = max(end for end, _cpu in ends) - began
        apps_elapsed = None
        if fanout:
            apps = [app_results.get(timeout=900) for _ in subscribers]
            apps_elapsed = max(end for end, _cpu in apps) - began
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu["publishers"] = sum(c for _end, c in ends)
        for proc in (*pubs, *subscribers):
            proc.join(10)
        stored = stored_count(influx.url, db) - concentrators
        delivered = None
        if fanout:
            procs["fanout"].stop()
            found = _SUMMARY.findall(procs["fanout"].log.read_text(errors="replace"))
            delivered = int(found[-1][1]) if found else None
        influx_query(influx.url, f'DROP DATABASE "{db}"')
        return Run(ingest_elapsed=ingest_elapsed, apps_elapsed=apps_elapsed, stored=stored, delivered=delivered,
                   cpu=cpu)
    finally:
        for sub in subscribers:
            if sub.is_alive():
                sub.terminate()
        for proc in procs.values():
            proc.stop()
        server.stop()


def report(run: Run, *, readings: int, fanout: bool, expected: int) -> None:
    rate = readings / run.ingest_elapsed
    per = ", ".join(f"{name} {seconds / readings * 1e6:.1f}" for name, seconds in run.cpu.items())
    print(f"fan-out {'on ' if fanout else 'off'}: ingest {rate:9,.0f} readings/s (all {readings:,} confirmed in "
          f"{run.ingest_elapsed:.1f} s; stored {run.stored:,})")
    print(f"    CPU us per reading: {per}")
    if fanout and run.apps_elapsed is not None:
        delivered = run.delivered or expected
        print(f"    apps: {expected:,} messages expected by 10 organisations, every one in by {run.apps_elapsed:.1f} s "
              f"({expected / run.apps_elapsed:,.0f} msg/s); the fan-out published {run.delivered} messages")
        print(f"    fan-out CPU per delivered message: {run.cpu['fanout'] / delivered * 1e6:.1f} us "
              f"({run.cpu['fanout'] / readings * 1e6:.1f} us per reading); mosquitto "
              f"{run.cpu['mosquitto'] / readings * 1e6:.1f} us per reading")
    if run.stored != readings:
        print(f"    MISMATCH: {run.stored} stored, {readings} sent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000, help="readings per run (one per message)")
    parser.add_argument("--properties", type=int, default=5, help="property values per reading")
    parser.add_argument("--concentrators", type=int, default=10, help="publishing concentrators (50 meters each)")
    parser.add_argument("--orgs", type=int, default=10, help="organisations with an app subscribed")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--unconfirmed", type=int, default=1000, help="the edge forwarder's max_unconfirmed")
    parser.add_argument("--modes", default="off,on", help="fan-out off, on, or both in this run: off,on")
    parser.add_argument("--access-meters", type=int, default=100_000,
                        help="meters for the authorisation view's read time (0: not measured)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print it")
    parser.add_argument("--profile", action="store_true", help="the fan-out under cProfile (implies --keep)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    args.keep = args.keep or args.profile
    modes = [m.strip() == "on" for m in args.modes.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="gridwire-bench-fanout-"))
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.keep:
        print(f"work directory: {work}")
    registry = f"sqlite+aiosqlite:///{work}/registry.sqlite"
    asyncio.run(registered_fleet(registry, args.concentrators))
    by_meter = asyncio.run(authorise(registry, args.concentrators, args.orgs))
    messages = build_messages(readings=args.readings, per_message=1, properties=args.properties,
                              concentrators=args.concentrators)
    expected = sum(len(by_meter[m.meter]) for m in messages)
    print(f"{args.readings:,} readings, one per message ({len(messages[0].payload)} B), {args.concentrators} "
          f"concentrators x {METERS_PER_CONCENTRATOR} meters; {args.orgs} organisations, each meter readable by 1 "
          f"or 2 ({expected / len(messages):.2f} app messages per reading)")
    try:
        if args.access_meters:
            seconds, unchanged, readable = asyncio.run(access_refresh(work, args.access_meters, args.orgs))
            print(f"authorisation view: one read of {args.access_meters:,} meters' authorisations (SQLite) "
                  f"took {seconds * 1000:,.0f} ms ({readable:,} readable), a refresh with nothing changed "
                  f"{unchanged * 1000:,.1f} ms: a revocation reaches the fan-out within "
                  "GRIDWIRE_FANOUT_ACCESS_REFRESH_SECONDS plus one read")
        influx = LocalInfluxd(directory=work / "influxd", port=free_port())
        influx.start()
        try:
            for fanout in modes:
                run = end_to_end(work, influx, messages, fanout=fanout, concentrators=args.concentrators,
                                 orgs=args.orgs, by_meter=by_meter, registry=registry, publishers=args.publishers,
                                 unconfirmed=args.unconfirmed)
                report(run, readings=args.readings, fanout=fanout, expected=expected)
        finally:
            influx.stop()
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
              "(other work on the machine lowers every wall figure; CPU per reading is the steadier one)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

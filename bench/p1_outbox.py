"""Bench: what a P1 meter costs the appliance's flash, per meter-day, under each forwarding policy.

A DSMR meter sends a telegram a second. Each policy runs in a child process over the same
telegrams (built and parsed as the reader parses them, mapped as the concentrator maps them)
into a real outbox (SQLite, WAL, synchronous=FULL), and the child is traced with ``strace -c``
to count the fsync and fdatasync calls it really made (less those of opening and closing an empty
outbox, measured in the same run). Bytes are the child's ``wchar`` (what
it handed to write calls, from /proc/self/io) while forwarding. Figures are scaled from the
simulated span to a day (86,400 telegrams) and printed against the first policy, the per-telegram
baseline (what P1 forwarding did before: one outbox transaction per telegram), in the same run.

    .venv/bin/python bench/p1_outbox.py                    # one hour of telegrams per policy
    .venv/bin/python bench/p1_outbox.py --telegrams 7200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = 86_400
POLICIES = {
    "per-telegram (before)": {"policy": "every", "batch_s": 0},
    "every, 10 s batches": {"policy": "every", "batch_s": 10},
    "15-min aggregates (default)": {"policy": "aggregate", "aggregate_s": 900},
}


def child(policy: dict, telegrams: int, directory: Path) -> None:
    """Forward ``telegrams`` one-second telegrams under ``policy``; print one JSON line of figures."""
    from devices.adapter_config import SmartMeterAdapterConfig
    from edge.outbox import Outbox
    from edge.p1.forwarding import LiveReadings, P1Forwarding
    from edge.p1.mapping import P1Mapper
    from edge.p1.simulator import MeterModel, _Accumulator
    from edge.p1.telegram import build_telegram, parse_telegram

    model = MeterModel(start=datetime(2026, 3, 2, tzinfo=UTC), gas_channel=None)
    mapper = P1Mapper(SmartMeterAdapterConfig.model_validate(
        {"meterIndividualId": "bench-meter", "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    state, readings = _Accumulator(model), []
    for n in range(telegrams):  # built before the measurement: only forwarding is counted
        readings.append(mapper.readings(parse_telegram(build_telegram(state.values(n)))))
        state.add(n)
    outbox = Outbox(directory / "outbox.sqlite")
    clock = [0.0]
    counts = {"transactions": 0, "readings": 0}

    def submit(batch: list) -> None:  # as Concentrator.submit serialises and stores
        outbox.put_many([(f"concentrator/bench/smartMeterMessage/{r.meter_id}/meterReading",
                          r.model_dump_json(by_alias=True, exclude_none=True).encode()) for r in batch])
        counts["transactions"] += 1
        counts["readings"] += len(batch)

    forwarding = P1Forwarding(submit=submit, live=LiveReadings(), clock=lambda: clock[0], **policy)
    before = _wchar()
    started = time.process_time()
    for n, telegram in enumerate(readings):
        clock[0] = float(n)
        forwarding.add(telegram)
    forwarding.flush()
    cpu = time.process_time() - started
    written = _wchar() - before
    outbox.close()
    print(json.dumps({**counts, "bytes": written, "cpu": cpu}))


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def run(name: str, policy: dict, telegrams: int, strace: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="gw-p1-bench-") as tmp:
        argv = [sys.executable, __file__, "--child", json.dumps(policy), "--telegrams", str(telegrams), "--dir", tmp]
        trace = Path(tmp) / "strace.txt"
        if strace:
            argv = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(trace), *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["fsyncs"] = _syncs(trace.read_text()) if strace else None
    return figures


def _syncs(summary: str) -> int:
    total = 0
    for line in summary.splitlines():
        match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", line)
        if match:
            total += int(match.group(1))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--telegrams", type=int, default=3600, help="one-second telegrams per policy (default an hour)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child), args.telegrams, args.dir)
        return
    strace = shutil.which("strace")
    scale = DAY / args.telegrams
    print(f"P1 forwarding into the outbox: {args.telegrams} telegrams per policy, scaled to a meter-day "
          f"(x{scale:g}); load average {os.getloadavg()[0]:.1f}; fsyncs counted by "
          f"{'strace' if strace else 'nothing (strace is missing: transactions only)'}")
    print(f"{'policy':30} {'transactions/day':>17} {'fsyncs/day':>11} {'readings/day':>13} {'MB/day':>8} "
          f"{'CPU s/day':>10} {'fsyncs vs before':>17}")
    # Opening and closing an outbox costs a few fsyncs of its own: measured once, not scaled to the day.
    empty = run("empty", POLICIES["per-telegram (before)"], 0, strace)
    overhead = empty["fsyncs"] or 0
    base = None
    for name, policy in POLICIES.items():
        got = run(name, policy, args.telegrams, strace)
        fsyncs = got["fsyncs"] - overhead if got["fsyncs"] is not None else got["transactions"]
        base = base or fsyncs
        print(f"{name:30} {got['transactions'] * scale:17,.0f} "
              f"{'-' if got['fsyncs'] is None else f'{fsyncs * scale:,.0f}':>11} {got['readings'] * scale:13,.0f} "
              f"{got['bytes'] * scale / 1e6:8.1f} {got['cpu'] * scale:10.1f} {fsyncs / base:17.4f}")


if __name__ == "__main__":
    main()

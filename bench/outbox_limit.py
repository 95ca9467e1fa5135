"""The concentrator's outbox below and at its limit (issue 18): what making room costs a reading.

An appliance without network fills its outbox; past ``outbox_limit`` every new message first
deletes the oldest live one (edge/outbox.py). This bench puts the same readings, one per
commit as the P1 reader and the poller do, into an outbox below its limit (the baseline) and
into a full one, in the same run, and prints both rates and their ratio.

    .venv/bin/python bench/outbox_limit.py                 # limit 20,000, 5,000 puts each
    .venv/bin/python bench/outbox_limit.py --limit 200000 --puts 20000
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from edge.outbox import Keep, Outbox

PAYLOAD = b'{"meterReadingIdentifier":"%08d-0000-4000-8000-000000000000",' + b'"x":' + b"1" * 560 + b"}"


def puts(outbox: Outbox, count: int, start: int, keep: Keep = Keep.LIVE) -> float:
    """Seconds to put ``count`` messages, one commit each."""
    began = time.perf_counter()
    for n in range(start, start + count):
        outbox.put_many([("concentrator/c/smartMeterMessage/m/meterReading", PAYLOAD % n)], keep=keep)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--puts", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory() as work:
        outbox = Outbox(Path(work) / "outbox.sqlite", max_messages=args.limit)
        # A few load-profile readings at the front: at the limit they stay, live ones go.
        puts(outbox, 100, 0, Keep.PROFILE)
        below = puts(outbox, args.puts, 100)
        puts(outbox, args.limit - len(outbox), 100 + args.puts)
        assert len(outbox) == args.limit and outbox.level == "FULL"
        at_limit = puts(outbox, args.puts, 100 + args.limit)
        assert outbox.shed[Keep.LIVE] == args.puts and outbox.shed[Keep.PROFILE] == 0
        outbox.close()
    print(f"load average {os.getloadavg()[0]:.1f}; limit {args.limit:,}, {args.puts:,} puts each, one commit per put "
          f"(synchronous=FULL)")
    print(f"(a) below the limit: {args.puts / below:,.0f} puts/s ({below / args.puts * 1e6:,.0f} us each)")
    print(f"(b) at the limit, each put giving up the oldest live message: {args.puts / at_limit:,.0f} puts/s "
          f"({at_limit / args.puts * 1e6:,.0f} us each)")
    print(f"(b)/(a): {below / at_limit:.2f}")


if __name__ == "__main__":
    main()

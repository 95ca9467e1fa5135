"""Reading times to InfluxDB nanoseconds, fast: RFC 3339 with an offset, parts cached.

A time is split into its day and offset, its time of day and its fraction; each part is
validated and converted once (they repeat across a fleet's readings) and the stamp is their
sum, in exact integer arithmetic as ``cloud.store.line_protocol.to_ns``. Anything else
(no offset, another spelling, out of range) raises UnusualTime: the full validator decides.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from broker.errors import Invalid

_MICRO = timedelta(microseconds=1)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_CACHE_LIMIT = 4096


class UnusualTime(Invalid):
    """Not a time in the usual spelling (it may still be valid: the full validator decides)."""


def to_ns(text: str, stamps: dict[str, int]) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with offset; remembered in ``stamps``."""
    if len(text) < 20 or text[10] != "T":
        raise UnusualTime
    if text[-1] == "Z":
        offset, end = "Z", len(text) - 1
    else:
        offset, end = text[-6:], len(text) - 6
    day = _DAYS.get(text[:10] + offset)
    if day is None:
        day = _day(text[:10], offset)
    seconds = _TIMES_OF_DAY.get(text[11:19])
    if seconds is None:
        seconds = _time_of_day(text[11:19])
    fraction = text[19:end]
    micro = _FRACTIONS.get(fraction) if fraction else 0
    if micro is None:
        micro = _fraction(fraction)
    stamp = ((day + seconds) * 1_000_000 + micro) * 1000
    stamps[text] = stamp
    return stamp


# Parts of times already seen: day+offset -> seconds of that day's midnight (in that offset)
# since the epoch; "HH:MM:SS" -> seconds; ".ffffff" -> microseconds. Bounded.
_DAYS: dict[str, int] = {}
_TIMES_OF_DAY: dict[str, int] = {}
_FRACTIONS: dict[str, int] = {}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET = re.compile(r"Z|[+-]\d{2}:\d{2}")
_CLOCK = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
_FRACTION = re.compile(r"\.\d{1,6}")


def _remember(cache: dict[str, int], key: str, value: int) -> int:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _day(date: str, offset: str) -> int:
    if not _DAY.fullmatch(date) or not _OFFSET.fullmatch(offset):
        raise UnusualTime
    try:
        midnight = datetime.fromisoformat(f"{date}T00:00:00{offset}")
        utc = midnight.utcoffset()
        assert utc is not None
        seconds = ((midnight.replace(tzinfo=None) - utc - _NAIVE_EPOCH) // _MICRO) // 1_000_000
    except (ValueError, OverflowError) as exc:
        raise UnusualTime(f"{date}{offset}") from exc
    return _remember(_DAYS, date + offset, seconds)


def _time_of_day(clock: str) -> int:
    match = _CLOCK.fullmatch(clock)
    if match is None:
        raise UnusualTime
    hours, minutes, seconds = (int(part) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 59:
        raise UnusualTime
    return _remember(_TIMES_OF_DAY, clock, hours * 3600 + minutes * 60 + seconds)


def _fraction(fraction: str) -> int:
    if not _FRACTION.fullmatch(fraction):
        raise UnusualTime
    return _remember(_FRACTIONS, fraction, int(fraction[1:].ljust(6, "0")))

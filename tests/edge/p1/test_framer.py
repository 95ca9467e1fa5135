"""The P1 framer: arbitrary chunks and noise in, every valid telegram out exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.p1.framer import TelegramFramer
from edge.p1.telegram import P1Values, build_telegram, frame_telegram, parse_telegram

START = datetime(2024, 11, 22, 13, 30, tzinfo=UTC)


def telegram(n: int) -> bytes:
    return build_telegram(P1Values(timestamp=START + timedelta(seconds=n), delivered_t1=Decimal(n)))


def feed_all(framer: TelegramFramer, stream: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    previous = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        out += framer.feed(stream[previous:cut])
        previous = cut
    return out


def test_one_telegram_byte_by_byte():
    framer = TelegramFramer()
    data = telegram(1)
    frames = [f for byte in data for f in framer.feed(bytes([byte]))]
    assert frames == [data]
    assert framer.stats.frames == 1 and framer.stats.dropped_bytes == 0
    assert framer.buffered == 0


def test_joining_mid_telegram_drops_the_tail():
    framer = TelegramFramer()
    first, second = telegram(1), telegram(2)
    frames = framer.feed(first[300:] + second)
    assert frames == [second]
    assert framer.stats.dropped_bytes == len(first) - 300


def test_truncated_telegram_is_counted_and_the_next_survives():
    framer = TelegramFramer()
    first, second = telegram(1), telegram(2)
    assert framer.feed(first[: len(first) // 2] + second) == [second]
    assert framer.stats.truncated == 1
    assert framer.stats.dropped_bytes == len(first) // 2


def test_oversize_frame_is_dropped_and_counted():
    framer = TelegramFramer(max_size=256)
    endless = b"/ISK5\r\n\r\n" + b"1-0:1.8.1(000001.000*kWh)\r\n" * 20
    assert framer.feed(endless) == []
    assert framer.stats.oversize == 1
    assert framer.buffered == 0
    # The rest of that frame arrives, then a small valid one: only the valid one comes out.
    small = frame_telegram("ISK5", ["0-0:96.14.0(0001)"])
    assert framer.feed(b"tail!ABCD\r\n" + small) == [small]
    assert framer.buffered == 0


def test_noise_with_fake_end_markers_does_not_eat_a_telegram():
    framer = TelegramFramer()
    data = telegram(3)
    noise = b"/xx!12" + b"!!" + b"/a!FFFF" + b"\x00/"
    assert framer.feed(noise + data) == [data]


def test_buffer_stays_bounded_under_noise():
    framer = TelegramFramer(max_size=512)
    for _ in range(200):
        framer.feed(b"/" + b"x" * 97)
        assert framer.buffered <= 512 + 6
    assert framer.stats.frames == 0


noise = st.binary(max_size=200) | st.sampled_from([b"/", b"!", b"/!", b"!0000\r\n", b"\r\n", b"/ISK5\r\n"])


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.tuples(noise, st.booleans()), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_fuzz_every_valid_telegram_comes_out_exactly_once(parts, cuts):
    stream = b""
    sent = []
    for n, (garbage, with_telegram) in enumerate(parts):
        stream += garbage
        if with_telegram:
            t = telegram(n)
            sent.append(t)
            stream += t
    framer = TelegramFramer()
    frames = feed_all(framer, stream, cuts)
    valid = []
    for frame in frames:
        try:
            parse_telegram(frame)
        except ValueError:
            continue
        valid.append(frame)
    assert valid == sent
    assert framer.stats.frames == len(frames)
    assert framer.buffered <= len(stream)


@pytest.mark.parametrize("size", [8, 15])
def test_max_size_must_hold_a_frame(size):
    with pytest.raises(ValueError):
        TelegramFramer(max_size=size)

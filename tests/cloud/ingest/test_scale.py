"""Ingest scale-out and failures with real processes: shared load, SIGKILL mid-batch, duplicates.

Each test runs ``gridwire cloud ingest`` as OS processes against the test broker and influxd,
as deployed: refusing unknown senders, with a registry that knows the concentrator and its
meters (so the registry view is on the path that is killed). It publishes like a
concentrator (QoS 1 batches with ``gw-seq``), and checks the two things that matter: every
seq is confirmed on ``concentrator/<cid>/ack``, and influxd holds every reading exactly once
with its values.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.cloud.ingest.rig import (
    Concentrator,
    IngestProcess,
    batch_payload,
    expected_points,
    registered_fleet,
    stored_points,
)

PER_MESSAGE = 10
METERS = 10


def message(k: int) -> tuple[str, int]:
    """Message k's meter and first reading index: 10 meters, consecutive readings per meter."""
    return f"m{k % METERS}", (k // METERS) * PER_MESSAGE


def expected(messages: range) -> dict:
    out: dict = {}
    for k in messages:
        out.update(expected_points(*message(k), PER_MESSAGE))
    return out


async def publish(conc: Concentrator, messages: range, *, live_batches: bool = False) -> None:
    """``live_batches``: every other message goes as a live batch (concentrator/{cid}/batch/meterReading)."""
    await asyncio.gather(*(conc.publish(k + 1, message(k)[0], batch_payload(*message(k), PER_MESSAGE),
                                        batch=live_batches and k % 2 == 1)
                           for k in messages))


@pytest.fixture
async def ingests(mosquitto, influxd, influx_db, tmp_path):
    started: list[IngestProcess] = []
    registry = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(registry, {"conc-1": [f"m{n}" for n in range(METERS)]})

    def make(client_id: str, **kwargs) -> IngestProcess:
        proc = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id=client_id,
                             directory=tmp_path, registry=registry, **kwargs)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


async def test_two_processes_share_the_load_and_store_every_reading_once(ingests, mosquitto, influxd, influx_db):
    a, b = ingests("ingest-a"), ingests("ingest-b")
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    async with Concentrator(mosquitto) as conc:
        await publish(conc, range(200))
        # The concentrator sends the first 40 again, as after a crash before their confirmation.
        await publish(conc, range(40))
        await conc.wait_acked(lambda acked: acked >= set(range(1, 201)))
    await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
    shares = a.summary(), b.summary()
    # 200 distinct messages, plus those of the 40 repeats that arrived before the stop (a repeat
    # may still be on its way when every sequence number is confirmed).
    assert 200 <= sum(s["messages"] for s in shares) <= 240
    assert all(s["messages"] >= 200 * 0.25 for s in shares), shares
    assert all(s["dead"] == 0 for s in shares)
    assert stored_points(influxd, influx_db) == expected(range(200))


async def test_sigkill_mid_batch_loses_nothing_once_the_process_is_back(ingests, mosquitto, influxd, influx_db):
    # A holds what it receives for a minute before writing: killed, it dies mid-batch. Every other
    # message is a live batch (each reading its own seq): both shapes come through the kill.
    a, b = ingests("ingest-a", batch_delay=60.0), ingests("ingest-b")
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    async with Concentrator(mosquitto) as conc:
        await publish(conc, range(100), live_batches=True)
        await conc.wait_acked(lambda acked: len(acked) >= 30)  # B confirms its share as it goes
        await asyncio.to_thread(a.kill)
        assert len(conc.acked) < 100  # A's share was received, unconfirmed, in flight
        # While A is away its session keeps what the broker had given it: B cannot take it over.
        with pytest.raises(TimeoutError):
            await conc.wait_acked(lambda acked: len(acked) == 100, timeout=3.0)
        missing = set(range(1, 101)) - conc.acked
        assert missing
        # Messages published while A is away: mosquitto 2.0 goes on giving the offline durable
        # session its turn in the shared subscription, so part of them wait for A too.
        await publish(conc, range(100, 150), live_batches=True)
        with pytest.raises(TimeoutError):
            await conc.wait_acked(lambda acked: acked >= set(range(101, 151)), timeout=3.0)
        assert not missing & conc.acked
        # A restarted with the same client id resumes its session: the broker sends A's share again.
        await asyncio.to_thread(a.start, batch_delay=0.05)
        await conc.wait_acked(lambda acked: acked >= set(range(1, 151)), timeout=30)
    assert stored_points(influxd, influx_db) == expected(range(150))


async def test_a_process_that_never_comes_back_costs_only_a_resend_after_its_session_expires(
        ingests, mosquitto, influxd, influx_db):
    env = {"GRIDWIRE_INGEST_SESSION_EXPIRY": "2"}
    a, b = ingests("ingest-a", batch_delay=60.0, env=env), ingests("ingest-b", env=env)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    async with Concentrator(mosquitto) as conc:
        await publish(conc, range(60))
        await conc.wait_acked(lambda acked: len(acked) >= 20)
        await asyncio.to_thread(a.kill)
        # Once A's session expired the broker gives B every new message...
        published = 60
        async def until_b_takes_everything() -> None:
            nonlocal published
            while True:
                batch = range(published, published + 10)
                await publish(conc, batch)
                published += 10
                try:
                    await conc.wait_acked(lambda acked: acked >= {k + 1 for k in batch}, timeout=1.0)
                    return
                except TimeoutError:
                    pass
        await asyncio.wait_for(until_b_takes_everything(), 30)
        # ...and what A's session held is gone from the broker: the concentrator's outbox,
        # having no confirmation for it, sends it again.
        resend = [k for k in range(published) if k + 1 not in conc.acked]
        assert resend
        await asyncio.gather(*(conc.publish(k + 1, message(k)[0], batch_payload(*message(k), PER_MESSAGE))
                               for k in resend))
        await conc.wait_acked(lambda acked: acked >= set(range(1, published + 1)), timeout=20)
    assert stored_points(influxd, influx_db) == expected(range(published))

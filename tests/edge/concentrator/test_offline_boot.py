"""A concentrator that boots with no network still reads its meters (issue 18).

It starts while its broker cannot be reached (a relay that refuses every connection), reads its
DLMS, Modbus and P1 simulators into the outbox for a minute, then the link comes up: every poll
and every telegram of that minute reaches InfluxDB through real ingest, once, and its retained
status says how long it was offline and how much it buffered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import yaml

from broker import topics
from broker.schemas import ConcentratorStatus
from cloud.timesync.consumer import TimeService
from edge.dlms import SecurityMode
from edge.metrics import concentrator_metrics
from edge.modbus import ModbusSimulator, load_map
from tests.e2e.conftest import expected_energy
from tests.e2e.conftest import simulator as p1_simulator
from tests.edge.concentrator.conftest import dlms_entry, dlms_simulator, modbus_entry, stored, wait_for, write_config
from tests.fixtures.ingest import cloud_session
from tests.fixtures.relay import TcpRelay

# The scenario: the broker is unreachable for the first minute.
OFFLINE_S = 60.0
P1_METER = "0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f"


def now() -> datetime:
    return datetime.now(UTC)


def p1_entry(directory, port: str) -> str:
    (directory / "meter.yaml").write_text(yaml.safe_dump({
        "meterIndividualId": P1_METER, "physicalMeterClass": "ELECTRICITY", "protocol": "p1"}))
    # Every telegram, each written at once: these tests count every one into the outbox.
    return f'[[meters]]\nprotocol = "p1"\nport = "{port}"\nadapter_config = "meter.yaml"\nforward = "every"\nbatch_s = 0\n'


def with_reconnect_max(config, seconds: float) -> None:
    text = config.read_text().replace('password = "conc-1-pw"\n', f'password = "conc-1-pw"\nreconnect_max = {seconds}\n')
    config.write_text(text)


async def test_boot_without_broker_reads_every_meter_and_delivers_all_once_it_connects(
        tmp_path, mosquitto, influxd, influx_db, ingest, run_concentrator):
    relay = TcpRelay(target_port=mosquitto.port)
    await relay.up()
    await relay.down()  # the port is known; nothing listens on it: connection refused
    statuses: list[ConcentratorStatus] = []
    watcher = cloud_session(mosquitto)
    await watcher.connect()

    async def on_status(message) -> None:
        if message.payload:
            statuses.append(ConcentratorStatus.model_validate_json(message.payload))

    await watcher.subscribe(topics.concentrator_status("conc-1"), on_status)
    telegrams = int(OFFLINE_S * 10)
    p1 = p1_simulator(telegrams, interval=0.1)
    async with (dlms_simulator(now, SecurityMode.HLS_GMAC, serial="GWHLS0000018") as dlms,
                ModbusSimulator(register_map=load_map("solar-inverter"), clock=lambda: 0.0) as modbus):
        config = write_config(tmp_path, mqtt_port=relay.port, initial_hours=0, status_interval=2,
                              meters=[dlms_entry("hls-18", dlms, interval=1.0, timeout=3.0),
                                      modbus_entry("inv-18", modbus, interval=1.0).replace("timeout = 0.5", "timeout = 3"), p1_entry(tmp_path, p1.open())])
        with_reconnect_max(config, 1)
        run = await run_concentrator(config, clock=now)
        c = run.concentrator
        await wait_for(lambda: c.open_ports == 1, what="the P1 port to be open")
        await p1.start()
        await asyncio.sleep(OFFLINE_S)  # the scenario: a minute without the broker
        assert not c.session.connected.is_set() and c.session.connections == 0
        await wait_for(lambda: p1.done.is_set(), what="the P1 meter to send every telegram")
        # Stop polling between two rounds (ticks are aligned, a round ends well before the next
        # one), so the simulators' counts and the poller's agree exactly.
        before = c.poller.totals()
        await wait_for(lambda: all(c.poller.totals()[m][1] > before[m][1] for m in ("hls-18", "inv-18")),
                       what="a polling round to end")
        await c.poller.stop()
        totals = c.poller.totals()
        dlms_polls, modbus_polls = totals["hls-18"][1], totals["inv-18"][1]
        assert totals["hls-18"][2] == totals["inv-18"][2] == 0  # no failed poll
        buffered = len(c.outbox) - c.events.submitted  # readings (the P1 log's event is not one)
        # The simulators' own counts: one DLMS association per poll (and one for the start-up
        # backfill of the current load-profile interval: initial_hours = 0), the same Modbus
        # requests in every poll.
        historical = c.backfiller.readings
        assert c.backfiller.runs == 1 and historical <= 1
        assert dlms.connections_accepted == dlms_polls + 1 and dlms_polls >= OFFLINE_S * 0.8
        per_poll = sum(modbus.request_counts.values()) / modbus_polls
        assert per_poll == int(per_poll) and modbus_polls >= OFFLINE_S * 0.8
        assert p1.sent == telegrams
        assert buffered == dlms_polls + historical + modbus_polls + telegrams
        offline_end = now()

        await relay.up()
        await wait_for(lambda: c.session.connections == 1, what="the concentrator to connect")
        # The P1 meter's power failure log event waits there: no event consumer runs here.
        await wait_for(lambda: len(c.outbox) == c.events.submitted, timeout=120, what="the outbox to drain")
        await wait_for(lambda: any(s.offline is not None for s in statuses), what="the status after the offline boot")
        await run.finish()
    await relay.down()
    await watcher.close()

    dlms_rows = stored(influxd, influx_db, "hls-18", fields='"OBIS_1.8.1", "reading_id"')
    modbus_rows = stored(influxd, influx_db, "inv-18", fields='"reading_id", "clock_free_running_s"')
    p1_rows = stored(influxd, influx_db, P1_METER)
    assert len(dlms_rows) == dlms_polls + historical and len({r[2] for r in dlms_rows}) == len(dlms_rows)
    assert len(modbus_rows) == modbus_polls and len({r[1] for r in modbus_rows}) == modbus_polls
    assert {t: v for t, v, _ in p1_rows} == expected_energy(p1.model, telegrams)
    assert all(t <= offline_end for t, *_ in dlms_rows + modbus_rows)
    # No time service here: every poll carries the free-running clock state, flagged in the store.
    assert all(0 < free <= OFFLINE_S + 60 for _, _, free in modbus_rows)

    status = next(s for s in statuses if s.offline is not None)
    assert status.state == "ONLINE" and status.offline.boot
    assert status.offline.buffered == buffered
    assert OFFLINE_S <= status.offline.seconds < OFFLINE_S + 60
    assert status.outbox is not None and status.outbox.level == "OK" and status.outbox.shed_live == 0


async def test_a_small_outbox_at_an_offline_boot_gives_up_the_oldest_live_values_and_says_so(
        tmp_path, mosquitto, influxd, influx_db, ingest, run_concentrator, caplog):
    """Outbox limit 100: the P1 meter alone sends 300 telegrams before the link comes up. The
    load-profile readings of the start-up backfill stay; the oldest live values make room, each
    counted and logged; what the outbox held at the limit is all stored once the link is up.
    Readings the concentrator stamped before its first time exchange carry its clock state."""
    caplog.set_level(logging.INFO, logger="edge")
    relay = TcpRelay(target_port=mosquitto.port)
    await relay.up()
    await relay.down()
    cloud = cloud_session(mosquitto)
    await cloud.connect()
    await TimeService(session=cloud).start()
    p1 = p1_simulator(300, interval=0.01)
    async with (dlms_simulator(now, SecurityMode.HLS_GMAC, serial="GWHLS0000019") as dlms,
                ModbusSimulator(register_map=load_map("solar-inverter"), clock=lambda: 0.0) as modbus):
        config = write_config(tmp_path, mqtt_port=relay.port, initial_hours=1,
                              meters=[dlms_entry("hls-19", dlms, interval=3600, timeout=3.0),
                                      modbus_entry("inv-19", modbus, interval=0.5).replace("timeout = 0.5", "timeout = 3"),
                                      p1_entry(tmp_path, p1.open())])
        with_reconnect_max(config, 1)
        config.write_text(config.read_text().replace('outbox = "outbox.sqlite"\n',
                                                     'outbox = "outbox.sqlite"\noutbox_limit = 100\n'))
        run = await run_concentrator(config, clock=now)
        c = run.concentrator
        await wait_for(lambda: c.open_ports == 1 and c.backfiller.runs == 1, what="P1 port open, backfill done")
        await p1.start()
        await wait_for(lambda: p1.done.is_set(), what="the P1 meter to send every telegram")
        # Hold the inverter's polls while the outbox is looked at.
        modbus.silent = True
        failed = c.poller.totals()["inv-19"][2]
        await wait_for(lambda: c.poller.totals()["inv-19"][2] > failed, what="a silent poll")
        # Readings only: the P1 meter's power failure log event is held too (it gives way last).
        held = [json.loads(m.payload) for m in c.outbox.after(0, limit=1000) if "/smartMeterMessage/" in m.topic]
        totals = c.poller.totals()
        taken = p1.sent + totals["inv-19"][1] + totals["hls-19"][1] + c.backfiller.readings
        state = c.outbox_state()
        assert (len(held) + c.events.submitted, state.level) == (100, "FULL")
        assert state.shed_profile == state.shed_events == state.refused == 0
        assert len(held) + state.shed_live == taken  # every reading taken is held or counted as given up
        historical = [r for r in held if r.get("historical")]
        assert len(historical) == c.backfiller.readings >= 4  # an hour of 15-minute intervals: all kept
        p1_held = sorted(datetime.fromisoformat(r["readingTime"]) for r in held
                         if r["meterIndividual"]["meterIndividualId"] == P1_METER)
        assert p1_held == [p1.model.timestamp(n) for n in range(300 - len(p1_held), 300)]  # the newest
        # Our clock stamped the polls, and has not been compared with the cloud's yet.
        assert all(r["clock"]["freeRunningSeconds"] > 0 for r in held if r["meterIndividual"]["meterIndividualId"]
                   == "inv-19")
        assert not any("clock" in r for r in held if r.get("historical") or r["meterIndividual"]["meterIndividualId"]
                       == P1_METER)
        assert "outbox at 80% of its limit" in caplog.text and "outbox full: 100 messages" in caplog.text
        assert "gave up the" in caplog.text
        metrics = dict(line.rsplit(" ", 1) for line in (await concentrator_metrics(c).render()).decode().splitlines()
                       if not line.startswith("#"))
        assert float(metrics['gridwire_edge_outbox_shed_total{class="live"}']) == state.shed_live
        assert float(metrics["gridwire_edge_outbox_limit"]) == 100
        assert float(metrics["gridwire_edge_clock_synchronised"]) == 0

        await relay.up()
        await wait_for(lambda: c.clock_state.synchronised, what="the first time exchange")
        modbus.silent = False
        ok = c.poller.totals()["inv-19"][1]
        await wait_for(lambda: c.poller.totals()["inv-19"][1] >= ok + 2, what="polls after the time exchange")
        await wait_for(lambda: len(c.outbox) == c.events.submitted, what="the outbox to drain")
        await wait_for(lambda: c.outbox.level == "OK", what="the level to fall")
        await run.finish()
    await relay.down()
    await cloud.close()

    stored_ids = {row[1] for meter in ("hls-19", "inv-19", P1_METER)
                  for row in stored(influxd, influx_db, meter, fields='"reading_id"')}
    assert {r["meterReadingIdentifier"] for r in held} <= stored_ids
    inverter = stored(influxd, influx_db, "inv-19", fields='"reading_id", "clock_free_running_s"')
    flagged = {rid for _, rid, free in inverter if free is not None}
    assert flagged == {r["meterReadingIdentifier"] for r in held if r["meterIndividual"]["meterIndividualId"]
                       == "inv-19"}
    assert len(inverter) >= len(flagged) + 2  # the polls after the exchange carry no clock state

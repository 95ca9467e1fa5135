"""A meter that stops answering is retried and reported unhealthy while the others are read; the
config's secrets never reach a log line or a repr; config errors name file, meter and field."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from broker import topics
from broker.session import Message, MqttSession
from edge.config import ConfigError, load_config
from tests.edge.concentrator.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD, dlms_entry, wait_for, write_config
from tests.fixtures.ingest import cloud_session


async def status_listener(mosquitto) -> tuple[MqttSession, list[dict]]:
    """A cloud session collecting conc-1's status messages (births and wills), in order."""
    statuses: list[dict] = []

    async def on_status(message: Message) -> None:
        statuses.append(json.loads(message.payload))

    cloud = cloud_session(mosquitto)
    await cloud.connect()
    await cloud.subscribe(topics.concentrator_status("conc-1"), on_status)
    return cloud, statuses


async def test_silent_meter_is_retried_and_reported_unhealthy_while_others_are_read(
        tmp_path, mosquitto, clock, lls_sim, hls_sim, run_concentrator):
    cloud, statuses = await status_listener(mosquitto)
    config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=0, status_interval=0.3,
                          meters=[dlms_entry("lls-1", lls_sim, timeout=0.3), dlms_entry("hls-1", hls_sim)])
    run = await run_concentrator(config, clock=clock)
    await wait_for(lambda: run.concentrator.poller.health_of("lls-1").last_success, what="a first read")

    lls_sim.unresponsive = True

    def health(status: dict, meter: str) -> dict:
        return next(m for m in status.get("meters", []) if m["meterId"] == meter)

    def reported_unhealthy() -> bool:
        return bool(statuses) and statuses[-1]["state"] == "ONLINE" and not health(statuses[-1], "lls-1")["healthy"]

    await wait_for(reported_unhealthy, what="a status that reports lls-1 unhealthy")
    failures, served = health(statuses[-1], "lls-1")["consecutiveFailures"], hls_sim.frames_served
    await wait_for(lambda: health(statuses[-1], "lls-1")["consecutiveFailures"] > failures + 1,
                   what="further retries")
    await wait_for(lambda: hls_sim.frames_served > served + 10, what="the healthy meter to keep being read")
    latest = statuses[-1]
    assert health(latest, "hls-1")["healthy"] and health(latest, "hls-1")["consecutiveFailures"] == 0
    assert "no answer within 0.3s" in health(latest, "lls-1")["lastError"]
    assert set(latest["completeness"]) == {"lls-1", "hls-1"}
    assert latest["liveBatch"] == {"enabled": False}  # the option's default: off

    lls_sim.unresponsive = False
    await wait_for(lambda: health(statuses[-1], "lls-1")["healthy"], what="lls-1 healthy again")
    await run.finish()
    await cloud.close()
    assert statuses[-1]["state"] == "OFFLINE" and statuses[-1]["liveBatch"] == {"enabled": False}


async def test_dlms_secrets_never_reach_the_log_or_a_repr(tmp_path, mosquitto, clock, lls_sim, hls_sim,
                                                            run_concentrator, caplog):
    caplog.set_level(logging.DEBUG)
    config_path = write_config(tmp_path, mqtt_port=mosquitto.port,
                               meters=[dlms_entry("lls-1", lls_sim), dlms_entry("hls-1", hls_sim)])
    config = load_config(config_path)
    run = await run_concentrator(config_path, clock=clock)
    await wait_for(lambda: run.concentrator.backfiller.runs >= 2 and run.concentrator.poller.health_of("hls-1").last_success,
                   what="both meters read and backfilled")
    await run.finish()

    exposed = repr(config) + str(config) + repr(run.concentrator.meters.dlms) + caplog.text
    assert "backfilled" in caplog.text  # the log really covers the start and the reads
    for secret in (PASSWORD, BLOCK_KEY, AUTH_KEY, BLOCK_KEY.upper(), "conc-1-pw"):
        assert secret not in exposed


@pytest.mark.parametrize(("entry", "expected"), [
    ('protocol = "dlms"\nmeter_id = "m-7"\nhost = "h"\nsecurity = "lls"\n', "meter m-7: (entry): Value error, security 'lls' needs a password"),
    ('protocol = "dlms"\nmeter_id = "m-7"\nhost = "h"\nport = 99999\npassword = "x"\n', "meter m-7: port:"),
    ('protocol = "dlms"\nmeter_id = "m-7"\nhost = "h"\nsecurity = "hls-gmac"\nblock_cipher_key = "zz-not-hex"\n'
     'authentication_key = "00"\n', "block_cipher_key must be hex"),
    ('protocol = "modbus"\nmeterIndividualId = "inv-3"\nregisterMap = "solar-inverter"\n', "meter inv-3: (entry): Value error, meter 'inv-3': give exactly one of tcp and serial"),
    ('protocol = "zigbee"\nmeter_id = "z"\n', "meter z: (entry): Input tag 'zigbee'"),
])
def test_config_errors_name_file_meter_and_field_but_no_secret(tmp_path, entry, expected):
    path = tmp_path / "c.toml"
    path.write_text(f'concentrator_id = "c1"\n\n[[meters]]\n{entry}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "zz-not-hex" not in message


def test_duplicate_meter_ids_are_refused(tmp_path):
    path = tmp_path / "c.toml"
    entry = '[[meters]]\nprotocol = "dlms"\nmeter_id = "m-1"\nhost = "h"\npassword = "p"\n'
    path.write_text(f'concentrator_id = "c1"\n{entry}{entry}')
    with pytest.raises(ConfigError, match="meter m-1: meter_id appears twice"):
        load_config(path)


def test_the_example_config_is_valid():
    from pathlib import Path

    from edge.config_lean import DlmsMeter, ModbusMeter, P1Meter  # what load_config gives (no pydantic)

    config = load_config(Path(__file__).parents[3] / "config" / "concentrator.example.toml")
    kinds = [type(m) for m in config.meters]
    assert kinds == [DlmsMeter, DlmsMeter, ModbusMeter, ModbusMeter, P1Meter]
    assert "000102030405060708090a0b0c0d0e0f" not in repr(config)


def test_placeholders_are_named_where_they_are(tmp_path):
    from edge.config import placeholders

    config = tmp_path / "c.toml"
    config.write_text('concentrator_id = "CHANGE-ME"\n[broker]\nhost = "b.example.net"\ncert_file = "tls/CHANGE-ME.pem"\n'
                      '[[meters]]\nport = "CHANGE-ME"\n')
    assert placeholders(config) == ["concentrator_id", "broker.cert_file", "meters[0].port"]
    assert placeholders(Path(__file__).parents[3] / "config" / "concentrator.example.toml") == []


async def test_a_connections_will_and_birth_carry_one_number_that_grows(tmp_path, mosquitto, clock, lls_sim,
                                                                       run_concentrator):
    """The broker publishes a dropped connection's will: it carries that connection's number,
    as its birth did, and the next connection's birth a higher one (monitoring relies on it
    to ignore a late will of an older connection)."""
    cloud, statuses = await status_listener(mosquitto)
    config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=0, status_interval=30,
                          meters=[dlms_entry("lls-1", lls_sim)])
    run = await run_concentrator(config, clock=clock)
    await wait_for(lambda: any(s["state"] == "ONLINE" for s in statuses), what="the first birth")
    first_birth = next(s for s in statuses if s["state"] == "ONLINE")

    run.concentrator.session._force_reconnect()  # noqa: SLF001 - the socket drops, no DISCONNECT: the will goes out
    await wait_for(lambda: any(s["state"] == "OFFLINE" for s in statuses), what="the will")
    await wait_for(lambda: statuses[-1]["state"] == "ONLINE" and statuses[-1]["session"] != first_birth["session"],
                   what="the next birth")
    will = next(s for s in statuses if s["state"] == "OFFLINE")
    await cloud.close()

    assert first_birth["session"] > 0
    assert will["session"] == first_birth["session"]
    assert statuses[-1]["session"] > will["session"]

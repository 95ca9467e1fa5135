"""``gridwire sim dlms --push-to --event``: a simulated meter process pushes on its own, and a
concentrator's push listener turns what it pushed into events."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.schemas import DeviceEventType
from edge.dlms.config import DlmsMeterConfig
from edge.dlms.push_listener import PushListener
from edge.dlms.sim_events import SimEvent, parse_event
from gridwire.procs import ManagedProcess
from tests.edge.dlms.test_push import events_box, listening, queued  # noqa: F401 - events_box is a fixture
from tests.fixtures.procs import free_port
from tests.fixtures.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]
SERIAL = "GW0000000777"


def test_event_specs_parse_or_say_what_is_wrong() -> None:
    assert parse_event("30:power-failure") == SimEvent(30.0, "power-failure")
    assert parse_event("0.5:alarm:REPLACE_BATTERY") == SimEvent(0.5, "alarm", 1)
    assert parse_event("2:alarm:7") == SimEvent(2.0, "alarm", 7)
    for spec, reason in (("soon:power-failure", "SECONDS:KIND"), ("-1:disconnect", "0 or more"),
                         ("3:explode", "one of"), ("3:alarm", "needs its bit"), ("3:alarm:32", "0..31"),
                         ("3:alarm:NOPE", "unknown alarm"), ("3:disconnect:4", "only an alarm")):
        with pytest.raises(ValueError, match=reason):
            parse_event(spec)


async def test_a_meter_process_pushes_its_scripted_occasions(events_box, tmp_path: Path) -> None:  # noqa: F811
    outbox, events = events_box
    port = free_port()
    config = DlmsMeterConfig.model_validate({"meter_id": "meter-0777", "host": "127.0.0.1", "port": port,
                                             "security": "none", "profile": "smr-5", "device_name": SERIAL})
    async with listening(PushListener(meters=[config], sink=events.submit, port=0)) as listener:
        meter = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "sim", "dlms", "--port", str(port),
                                     "--security", "none", "--serial", SERIAL,
                                     "--push-to", f"127.0.0.1:{listener.port}",
                                     "--event", "0.2:power-failure", "--event", "0.4:power-restored",
                                     "--event", "0.6:cover-open", "--event", "0.8:alarm:REPLACE_BATTERY",
                                     "--event", "1.0:disconnect", "--event", "1.2:reconnect"],
                               log=tmp_path / "meter.log", port=port, cwd=ROOT)
        try:
            meter.start(timeout=60)
            switched = {DeviceEventType.DISCONNECTOR_OPENED, DeviceEventType.DISCONNECTOR_CLOSED}
            await wait_for(lambda: switched <= {e.event_type for _, e in queued(outbox)}, timeout=60,
                           what="every scripted push as an event, the last ones included")
        finally:
            meter.stop()
    kinds = [e.event_type for _, e in queued(outbox)]
    assert kinds[:2] == [DeviceEventType.POWER_FAILURE, DeviceEventType.POWER_RESTORED]
    # The cover opened (fraud log) and the fraud alarm bit; the alarm push that follows carries the
    # whole register, fraud bit still set (the same event again if within the same meter second).
    assert kinds.count(DeviceEventType.TAMPER) in (2, 3)
    assert DeviceEventType.METER_ALARM in kinds
    # The disconnector's pushes leave from the switch on their own (not awaited), each on its own connection.
    assert sorted(kinds[-2:]) == sorted([DeviceEventType.DISCONNECTOR_OPENED, DeviceEventType.DISCONNECTOR_CLOSED])
    assert {e.device_id for _, e in queued(outbox)} == {"meter-0777"}


def test_bad_options_stop_the_meter_with_the_reason(tmp_path: Path) -> None:
    import subprocess

    for args, reason in ((["--event", "3:explode"], "the kind is one of"),
                         (["--push-to", "nowhere"], "HOST:PORT"),
                         (["--serial-port", "/dev/null", "--event", "1:power-failure"], "needs the TCP meter")):
        done = subprocess.run([sys.executable, "-m", "gridwire.cli", "sim", "dlms", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and reason in done.stderr + done.stdout, (args, done.stderr)

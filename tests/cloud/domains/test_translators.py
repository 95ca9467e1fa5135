"""The domain translators, pure: functional operations become the right generic commands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.core.functions import function_of
from cloud.domains.base import command_ids
from cloud.domains.catalogue import DOMAINS
from cloud.domains.consumer import TranslationError, translate
from cloud.domains.schemas import FunctionalRequest
from tests.cloud.domains.examples import EXAMPLES

LIGHTING = DOMAINS["publiclighting"]


@given(on=st.booleans(), dim=st.none() | st.integers(0, 100))
def test_set_light(on: bool, dim: int | None) -> None:
    commands = LIGHTING.operation("setLight").commands({"on": on, "dimLevel": dim})
    assert commands[0].name == "set_relay" and commands[0].parameters == {"index": 1, "closed": on}
    if on and dim is not None:
        assert commands[1].name == "set_dim_level" and commands[1].parameters == {"percent": dim}
    else:
        assert len(commands) == 1


@pytest.mark.parametrize("bad", [{"on": True, "dimLevel": 101}, {"on": "maybe"}, {"dimLevel": 5}, {"on": True, "x": 1}])
def test_set_light_refuses_bad_parameters(bad: dict) -> None:
    with pytest.raises(ValidationError):
        LIGHTING.operation("setLight").commands(bad)


@pytest.mark.parametrize(("operation", "command"), [("actualReads", "read_now"), ("disconnect", "disconnect"),
                                                    ("reconnect", "connect"), ("synchronizeTime", "set_clock"),
                                                    ("firmwareVersion", "get_firmware_version"),
                                                    ("alarms", "read_alarms")])
def test_smart_metering_table(operation: str, command: str) -> None:
    op = DOMAINS["smartmetering"].operation(operation)
    assert [c.name for c in op.commands({})] == [command]
    assert function_of(command) is op.function


def test_every_operation_needs_the_function_the_core_checks() -> None:
    for domain in DOMAINS.values():
        for op in domain.operations.values():
            sample = EXAMPLES[domain.name][op.name]
            for spec in op.commands(sample):
                assert function_of(spec.name) is op.function, (domain.name, op.name, spec.name)


def test_tariff_schedule_sorted_and_validated() -> None:
    op = DOMAINS["tariffswitching"].operation("setSchedule")
    [spec] = op.commands({"entries": [{"time": "22:00", "high": False, "days": ["SUNDAY", "MONDAY", "MONDAY"]},
                                      {"time": "07:00", "high": True}]})
    assert [e["time"] for e in spec.parameters["entries"]] == ["07:00", "22:00"]
    assert spec.parameters["entries"][1]["days"] == ["MONDAY", "SUNDAY"]
    with pytest.raises(ValidationError):
        op.commands({"entries": [{"time": "25:00", "high": True}]})


def test_translate_gives_stable_ids_and_expiry() -> None:
    request = FunctionalRequest(deviceId="l", operation="setLight", parameters={"on": True, "dimLevel": 3},
                                ttlSeconds=60, issuedAt=datetime.now(UTC))
    first = translate(LIGHTING, "org", request)
    again = translate(LIGHTING, "org", request)
    assert [c.command_id for c in first] == [c.command_id for c in again]
    assert [str(c.command_id) for c in first] == command_ids(str(request.correlation_id), 2)
    assert all(c.organisation == "org" and (c.expires_at - c.issued_at).total_seconds() == 60 for c in first)
    with pytest.raises(TranslationError):
        translate(LIGHTING, "org", request.model_copy(update={"operation": "explode"}))
    assert uuid.UUID(str(first[0].command_id)).version == 5

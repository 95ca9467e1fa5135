"""Every functional operation reaches a device: each generic command it becomes is one the core
authorises (a device function) and one an edge handler carries out, and docs/ARCHITECTURE.md's
table of functional domains lists it with those commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from broker.schemas import MeterReading
from cloud.core.functions import FUNCTION_OF
from cloud.domains.base import Domain
from cloud.domains.catalogue import DOMAINS
from devices.modbus.register_map import available_maps, load_map
from devices.profiles import load_profile
from edge.commands.meter_handlers import dlms_handlers, modbus_handlers
from edge.devices.street_light import LightCommandError, LightState
from edge.polling import MeterPoller
from tests.cloud.domains.examples import EXAMPLES

ARCHITECTURE = Path(__file__).parents[3] / "docs" / "ARCHITECTURE.md"

async def _discard(_reading: MeterReading) -> None:
    return None


class _Named:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


def edge_commands() -> dict[str, str]:
    """Every generic command some edge handler carries out -> where (building handlers runs no I/O)."""
    poller = MeterPoller(sink=_discard)
    found: dict[str, str] = {}
    dlms = dlms_handlers(adapter=_Named(meter_id="m", profile=load_profile("smr-5")), poller=poller, completeness=lambda _m, _d: {},
                         backfill=lambda *_a, **_k: None)
    found.update(dict.fromkeys(dlms, "edge/commands/meter_handlers.py dlms_handlers"))
    found["update_firmware"] = "edge/ota/agent.py"
    for name in available_maps():
        source = _Named(meter_id="m", adapter=_Named(register_map=load_map(name)))
        found.update({c: f"edge/commands/meter_handlers.py modbus_handlers ({name})"
                      for c in modbus_handlers(source=source, poller=poller, completeness=lambda _m, _d: {})})
    for command in FUNCTION_OF:
        try:
            LightState().apply(command, {})
        except LightCommandError as exc:
            if exc.code == "UNSUPPORTED_COMMAND":
                continue
        found.setdefault(command, "edge/devices/street_light.py")
    return found


def documented() -> dict[tuple[str, str], list[str]]:
    """(domain, operation) -> generic commands, from the functional domains table of ARCHITECTURE.md."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and re.fullmatch(r"`[a-z]+`", cells[0]) and re.fullmatch(r"`[A-Za-z]+`", cells[1]):
            rows[(cells[0].strip("`"), cells[1].strip("`"))] = re.findall(r"`([a-z_]+)`", cells[3])
    return rows


OPERATIONS = [(d, op) for d, domain in DOMAINS.items() for op in domain.operations]


def commands_of(domain: Domain, operation: str) -> list[str]:
    params = EXAMPLES.get(domain.name, {}).get(operation)
    assert params is not None, f"{domain.name}/{operation}: add example parameters to EXAMPLES"
    return [spec.name for spec in domain.operation(operation).commands(params)]


@pytest.mark.parametrize(("domain", "operation"), OPERATIONS)
def test_every_operation_reaches_an_edge_handler(domain: str, operation: str) -> None:
    handlers = edge_commands()
    for command in commands_of(DOMAINS[domain], operation):
        assert command in FUNCTION_OF, f"{domain}/{operation}: the core does not know {command!r}"
        assert command in handlers, f"{domain}/{operation}: no edge handler carries out {command!r}"


@pytest.mark.parametrize(("domain", "operation"), OPERATIONS)
def test_every_operation_is_in_the_architecture_table(domain: str, operation: str) -> None:
    rows = documented()
    assert (domain, operation) in rows, f"docs/ARCHITECTURE.md's functional domains table lacks {domain}/{operation}"
    assert sorted(set(rows[(domain, operation)])) == sorted(set(commands_of(DOMAINS[domain], operation)))

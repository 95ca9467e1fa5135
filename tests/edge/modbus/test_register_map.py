"""Register maps: the shipped maps load, bad maps are refused naming file and point, planning."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from devices.modbus.data_types import DataType
from devices.modbus.register_map import RegisterMap, RegisterMapError, RegisterType, available_maps, load_map
from edge.modbus.plan import MAX_REGISTERS_PER_READ, plan_reads


def test_shipped_maps_load_with_the_promised_points() -> None:
    assert {"solar-inverter", "load-control-relay"} <= set(available_maps())
    inverter = load_map("solar-inverter")
    energy = inverter.point("energy_total")
    assert (energy.property_id, energy.unit, energy.multiplier) == ("OBIS_2.8.0", "kWh", pytest.approx(0.01))
    assert {"ac_power", "voltage", "frequency", "status"} <= {p.name for p in inverter.points}
    relay = load_map("load-control-relay")
    coils = relay.by_register(RegisterType.COIL)
    assert [p.name for p in coils] == ["relay_1", "relay_2", "relay_3", "relay_4"]
    assert all(p.writable for p in coils)
    assert not relay.point("relay_1_state").writable


def _write(tmp_path: Path, points: list[dict]) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"name": "broken", "points": points}))
    return path


GOOD = {"name": "ok", "address": 0, "register": "holding", "type": "uint16", "property": "X"}


@pytest.mark.parametrize(("bad", "message"), [
    ({"name": "volts", "address": 70000}, "address"),
    ({"name": "volts", "type": "uint24"}, "type"),
    ({"name": "volts", "register": "input", "writable": True}, "cannot be written"),
    ({"name": "volts", "register": "coil"}, "must be bool"),
    ({"name": "volts", "scale": 0.1, "scalePower": -1}, "not both"),
    ({"name": "volts", "colour": "red"}, "colour"),
])
def test_a_bad_point_is_named_with_its_file(tmp_path: Path, bad: dict, message: str) -> None:
    path = _write(tmp_path, [{**GOOD, "address": 10}, {**GOOD, **bad}])
    with pytest.raises(RegisterMapError) as info:
        load_map(path)
    text = str(info.value)
    assert str(path) in text
    assert "point 'volts' (#2)" in text
    assert message in text


def test_overlapping_points_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [{**GOOD, "name": "wide", "type": "uint32"}, {**GOOD, "name": "inside", "address": 1}])
    with pytest.raises(RegisterMapError, match="'inside'.*overlaps.*'wide'"):
        load_map(path)


def test_duplicate_names_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match="defined twice"):
        load_map(_write(tmp_path, [GOOD, {**GOOD, "address": 5}]))
    with pytest.raises(RegisterMapError, match="cannot read"):
        load_map(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("points: [unclosed")
    with pytest.raises(RegisterMapError, match="not valid YAML"):
        load_map(tmp_path / "bad.yaml")


def test_planning_groups_contiguous_points(all_types_map: RegisterMap) -> None:
    requests = plan_reads(all_types_map)
    by_type = {r.register_type: [] for r in requests}
    for request in requests:
        by_type[request.register_type].append((request.address, request.count))
    assert by_type[RegisterType.HOLDING] == [(0, 24)]
    assert by_type[RegisterType.INPUT] == [(0, 1), (10, 2)]  # gap of 9: two requests
    assert by_type[RegisterType.COIL] == [(0, 3)]
    assert by_type[RegisterType.DISCRETE] == [(5, 1)]
    merged = plan_reads(all_types_map, max_gap=9)
    assert [(r.address, r.count) for r in merged if r.register_type is RegisterType.INPUT] == [(0, 12)]


point_specs = st.lists(
    st.tuples(st.integers(0, 600), st.sampled_from([DataType.UINT16, DataType.UINT32, DataType.FLOAT64])),
    min_size=1, max_size=40,
)


@given(point_specs, st.integers(0, 20))
def test_plans_cover_every_point_once_within_limits(specs: list[tuple[int, DataType]], gap: int) -> None:
    points, next_free = [], 0
    for i, (step, data_type) in enumerate(specs):
        address = next_free + step % 30
        points.append({"name": f"p{i}", "address": address, "register": "input", "type": data_type.value,
                       "property": "X"})
        next_free = address + {DataType.UINT16: 1, DataType.UINT32: 2, DataType.FLOAT64: 4}[data_type]
    register_map = RegisterMap.model_validate({"name": "generated", "points": points})
    requests = plan_reads(register_map, max_gap=gap)
    covered = [p.name for r in requests for p in r.points]
    assert sorted(covered) == sorted(p["name"] for p in points)
    for request in requests:
        assert request.count <= MAX_REGISTERS_PER_READ
        for point in request.points:
            assert request.address <= point.address and point.end <= request.address + request.count
        ordered = list(request.points)
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert after.address - before.end <= gap

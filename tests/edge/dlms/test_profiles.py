"""Meter profiles: inheritance with ``extends`` and validation errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.profiles import ProfileError, load_profile


def test_dsmr_profile_maps_obis_to_omdp_properties() -> None:
    profile = load_profile("dsmr-4.2.2")
    mapping = profile.mapping_for("1.0.1.8.1.255")
    assert mapping is not None and (mapping.property_id, mapping.unit) == ("OBIS_1.8.1", "kWh")
    assert profile.load_profile is not None and profile.load_profile.period_minutes == 15
    assert profile.mapping_for("1.0.32.7.0.255") is None


def test_smr5_extends_dsmr_and_adds_voltage() -> None:
    parent = load_profile("dsmr-4.2.2")
    child = load_profile("smr-5")
    assert child.name == "smr-5"
    assert [m.source for m in child.registers[:len(parent.registers)]] == [m.source for m in parent.registers]
    voltage = child.mapping_for("1.0.32.7.0.255")
    assert voltage is not None and (voltage.property_id, voltage.unit) == ("OBIS_32.7.0", "V")
    assert child.disconnect_obis == parent.disconnect_obis == "0.0.96.3.10.255"


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_child_entry_replaces_parent_entry_for_same_obis(tmp_path: Path) -> None:
    _write(tmp_path, "base", "name: base\nregisters:\n  - {source: 1.0.1.8.0.255, propertyId: OBIS_1.8.0, unit: kWh}\n")
    _write(tmp_path, "kid", "name: kid\nextends: base\nregisters:\n"
                            "  - {source: 1.0.1.8.0.255, propertyId: OBIS_1.8.0, unit: Wh}\n")
    profile = load_profile("kid", directory=tmp_path)
    assert [(m.source, m.unit) for m in profile.registers] == [("1.0.1.8.0.255", "Wh")]


def test_bad_obis_error_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad", "name: bad\nregisters:\n  - {source: 1-0:1.8.1, propertyId: OBIS_1.8.1}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile("bad", directory=tmp_path)
    assert str(path) in str(caught.value)
    assert "registers.0.source" in str(caught.value)


def test_unknown_field_error_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "typo", "name: typo\nregisterz: []\nregisters:\n"
                                    "  - {source: 1.0.1.8.1.255, propertyId: OBIS_1.8.1}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile("typo", directory=tmp_path)
    assert f"{path}: registerz:" in str(caught.value)


def test_extends_cycle_and_missing_parent_are_reported(tmp_path: Path) -> None:
    _write(tmp_path, "a", "name: a\nextends: b\n")
    _write(tmp_path, "b", "name: b\nextends: a\n")
    with pytest.raises(ProfileError, match="extends itself: a -> b -> a"):
        load_profile("a", directory=tmp_path)
    _write(tmp_path, "orphan", "name: orphan\nextends: nowhere\n")
    with pytest.raises(ProfileError, match="nowhere"):
        load_profile("orphan", directory=tmp_path)

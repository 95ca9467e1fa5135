"""The SmartMeterAdapterConfig file: YAML and TOML, and errors that name the file and the field."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devices.adapter_config import AdapterConfigError, SmartMeterAdapterConfig, load_adapter_config

YAML = """\
meterIndividualId: 0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f
physicalElementId: 5f0c7e2a-9b1d-4e3f-8a6c-7d2e1f0a9b8c
physicalMeterClass: ELECTRICITY
protocol: p1
operationalProperties:
  - {source: "1-0:1.8.1", propertyId: OBIS_1.8.1, unit: kWh}
  - {source: "1-0:1.7.0", propertyId: OBIS_1.7.0, unit: W, scale: 1000}
subMeters:
  - {channel: 1, meterIndividualId: gas-17, physicalMeterClass: GAS}
"""

TOML = """\
meterIndividualId = "elec-1"
physicalMeterClass = "ELECTRICITY"

[[operationalProperties]]
source = "1-0:1.8.1"
propertyId = "OBIS_1.8.1"
unit = "kWh"

[[subMeters]]
channel = 2
meterIndividualId = "water-1"
physicalMeterClass = "WATER"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_yaml(tmp_path):
    config = load_adapter_config(write(tmp_path, "adapter.yaml", YAML))
    assert config.meter_individual_id == "0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f"
    assert config.physical_element_id == uuid.UUID("5f0c7e2a-9b1d-4e3f-8a6c-7d2e1f0a9b8c")
    assert [m.property_id for m in config.operational_properties] == ["OBIS_1.8.1", "OBIS_1.7.0"]
    assert config.operational_properties[1].scale == 1000
    assert config.sub_meter(1).meter_individual_id == "gas-17"
    assert config.sub_meter(2) is None
    individual = config.meter_individual()
    assert individual.physical_meter_type.physical_meter_class == "ELECTRICITY"


def test_load_toml(tmp_path):
    config = load_adapter_config(write(tmp_path, "adapter.toml", TOML))
    assert config.meter_individual_id == "elec-1"
    assert config.sub_meter(2).physical_meter_class == "WATER"


def test_yaml_round_trip(tmp_path):
    config = load_adapter_config(write(tmp_path, "adapter.yaml", YAML))
    again = load_adapter_config(write(tmp_path, "again.yml", config.to_yaml()))
    assert again == config


@pytest.mark.parametrize("text, field", [
    (YAML.replace("meterIndividualId: 0b6f", "meterIndividualIdx: 0b6f"), "meterIndividualId"),
    (YAML.replace("propertyId: OBIS_1.8.1", "propertyIdd: OBIS_1.8.1"), "operationalProperties.0.propertyId"),
    (YAML.replace("scale: 1000", "scale: lots"), "operationalProperties.1.scale"),
    (YAML.replace("physicalElementId: 5f0c7e2a", "physicalElementId: zz0c7e2a"), "physicalElementId"),
    (YAML.replace("channel: 1", "channel: 7"), "subMeters.0.channel"),
    (YAML.replace("physicalMeterClass: GAS", "physicalMeterClass: STEAM"), "subMeters.0.physicalMeterClass"),
    (YAML.replace("source: \"1-0:1.7.0\"", "source: \"1-0:1.8.1\""), "operationalProperties: source"),
    (YAML.replace("meterIndividualId: gas-17", "meterIndividualId: 0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f"),
     "meterIndividualId is used twice"),
    (YAML.replace("meterIndividualId: 0b6f", "meterIndividualId: a/b-0b6f"), "meterIndividualId"),
])
def test_validation_errors_name_file_and_field(tmp_path, text, field):
    path = write(tmp_path, "meter-7.yaml", text)
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message


@pytest.mark.parametrize("name, text, reason", [
    ("broken.yaml", "meterIndividualId: [unclosed", "not valid YAML"),
    ("broken.toml", "meterIndividualId = ", "not valid TOML"),
    ("list.yaml", "- a\n- b\n", "top level must be a mapping"),
    ("adapter.ini", "x=1", "unknown config format"),
])
def test_unreadable_files_name_the_file(tmp_path, name, text, reason):
    path = write(tmp_path, name, text)
    with pytest.raises(AdapterConfigError, match=reason) as caught:
        load_adapter_config(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(AdapterConfigError, match="cannot read"):
        load_adapter_config(tmp_path / "nope.yaml")


def test_snake_case_is_accepted_and_mapping_defaults_to_none():
    config = SmartMeterAdapterConfig(meter_individual_id="m1")
    assert config.operational_properties is None
    assert config.protocol == "p1"

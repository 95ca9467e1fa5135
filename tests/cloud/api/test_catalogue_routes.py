"""The catalogue API and the adapter-config endpoint, through the real app (no store needed)."""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.api import create_app
from cloud.auth import issue_token
from cloud.catalogue import default_catalogue
from cloud.settings import ApiSettings
from devices.adapter_config import AdapterConfigError, load_adapter_config, parse_adapter_config

SECRET = "catalogue-test-secret-not-for-production"
AUTH = {"Authorization": f"Bearer {issue_token(secret=SECRET, org='utility')}"}


def element_named(name: str):
    return next(e for e in default_catalogue().elements() if e.physical_element_name == name)


P1_METER = element_named("DSMR 5 electricity meter")
INVERTER = element_named("solar-inverter")
WATER = element_named("Water Consumption Meter - Household")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings=ApiSettings(jwt_secret=SECRET))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c


async def test_catalogue_needs_a_token(client: httpx.AsyncClient) -> None:
    for path in ("/v1/operationalProperties", f"/v1/physicalMeterElements/{P1_METER.physical_element_id}"):
        r = await client.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.post(f"/v1/physicalMeterElements/{P1_METER.physical_element_id}/meterIndividuals", json={})
    assert r.status_code == 401


async def test_operational_properties(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/v1/operationalProperties", headers=AUTH)).json()
    assert len(everything) == len(default_catalogue())
    assert {"propertyId", "propertyDescription", "allowedUnits", "valueType", "meterClasses"} <= set(everything[0])
    heat = (await client.get("/v1/operationalProperties", params={"meterClass": "HEAT"}, headers=AUTH)).json()
    assert heat and all("HEAT" in p["meterClasses"] for p in heat)
    one = await client.get("/v1/operationalProperties/OBIS_15.7.0", headers=AUTH)
    assert one.status_code == 200 and one.json()["allowedUnits"][0] == "kW"
    missing = await client.get("/v1/operationalProperties/OBIS_16.8.", headers=AUTH)
    assert missing.status_code == 404 and "OBIS_16.8." in missing.json()["detail"]
    bad_class = await client.get("/v1/operationalProperties", params={"meterClass": "STEAM"}, headers=AUTH)
    assert bad_class.status_code == 422


async def test_physical_meter_elements(client: httpx.AsyncClient) -> None:
    elements = (await client.get("/v1/physicalMeterElements", headers=AUTH)).json()
    assert len(elements) == len(default_catalogue().elements())
    assert all(uuid.UUID(e["physicalElementId"]) for e in elements)
    gas = (await client.get("/v1/physicalMeterElements", params={"meterClass": "GAS"}, headers=AUTH)).json()
    assert [e["physicalMeterClass"] for e in gas] == ["GAS"]
    one = (await client.get(f"/v1/physicalMeterElements/{P1_METER.physical_element_id}", headers=AUTH)).json()
    assert one["physicalElementName"] == "DSMR 5 electricity meter" and one["protocols"] == ["p1", "dlms"]
    ids = {p["propertyId"] for p in one["physicalMeterOperationalProperties"]}
    assert {"OBIS_1.8.1", "OBIS_21.7.0", "OBIS_C.7.0"} <= ids
    assert (await client.get(f"/v1/physicalMeterElements/{uuid.uuid4()}", headers=AUTH)).status_code == 404
    assert (await client.get("/v1/physicalMeterElements/123e4567-e89b-12d3-a456-426614174abcd",
                             headers=AUTH)).status_code == 422


async def test_adapter_config_round_trip_yaml(client: httpx.AsyncClient, tmp_path) -> None:
    r = await client.post(f"/v1/physicalMeterElements/{P1_METER.physical_element_id}/meterIndividuals",
                          json={"meterIndividualId": "meter-0042", "householdId": "hh-7"}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/yaml")
    assert r.headers["content-disposition"] == 'attachment; filename="meter-0042.yaml"'
    assert "# householdId: hh-7" in r.text
    path = tmp_path / "meter-0042.yaml"
    path.write_text(r.text)
    config = load_adapter_config(path)
    assert config.meter_individual_id == "meter-0042" and config.protocol == "p1"
    assert config.physical_element_id == P1_METER.physical_element_id
    assert [m.property_id for m in config.operational_properties] == [
        p.property_id for p in P1_METER.operational_properties]
    individual = config.meter_individual()
    assert individual.physical_meter_type.physical_meter_class == "ELECTRICITY"
    # Nothing about the concentrator or the broker: those are the concentrator's.
    assert not re.search(r"concentrator\w*:|broker\w*:|host:", r.text)


async def test_adapter_config_round_trip_toml_with_generated_id(client: httpx.AsyncClient, tmp_path) -> None:
    r = await client.post(f"/v1/physicalMeterElements/{INVERTER.physical_element_id}/meterIndividuals",
                          json={"format": "toml"}, headers=AUTH)
    assert r.status_code == 201, r.text
    meter_id = r.headers["x-meter-individual-id"]
    assert uuid.UUID(meter_id).version == 4
    assert r.headers["content-disposition"] == f'attachment; filename="{meter_id}.toml"'
    path = tmp_path / "inverter.toml"
    path.write_text(r.text)
    config = load_adapter_config(path)
    assert config.protocol == "modbus" and config.meter_individual_id == meter_id
    by_id = {m.property_id: m for m in config.operational_properties}
    assert by_id["GW_inverter.status"].value_type == "text" and by_id["OBIS_2.7.0"].source == "ac_power"
    assert tomllib.loads(r.text)["physicalElementName"] == "solar-inverter"


async def test_adapter_config_for_another_protocol_and_refusals(client: httpx.AsyncClient) -> None:
    base = f"/v1/physicalMeterElements/{P1_METER.physical_element_id}/meterIndividuals"
    dlms = await client.post(base, json={"protocol": "dlms"}, headers=AUTH)
    config = parse_adapter_config(yaml.safe_load(dlms.text))
    assert config.protocol == "dlms" and config.operational_properties[0].source == "1.0.1.8.1.255"
    no_source = await client.post(base, json={"protocol": "modbus"}, headers=AUTH)
    assert no_source.status_code == 422 and "can be read with: p1, dlms" in no_source.json()["detail"]
    water = await client.post(f"/v1/physicalMeterElements/{WATER.physical_element_id}/meterIndividuals",
                              headers=AUTH)
    assert water.status_code == 422 and "no adapter protocol" in water.json()["detail"]
    unknown = await client.post(f"/v1/physicalMeterElements/{uuid.uuid4()}/meterIndividuals", json={},
                                headers=AUTH)
    assert unknown.status_code == 404
    for body in ({"meterIndividualId": "a/b"}, {"meterIndividualId": "m+"}, {"format": "json"},
                 {"protocol": "zigbee"}, {"householdId": "a\nb"}, {"colour": "red"}):
        assert (await client.post(base, json=body, headers=AUTH)).status_code == 422, body


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meter_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}\Z"), fmt=st.sampled_from(["yaml", "toml"]),
       element=st.sampled_from([e for e in default_catalogue().elements() if e.protocols]))
async def test_every_generated_file_validates(client: httpx.AsyncClient, meter_id: str, fmt: str, element) -> None:
    r = await client.post(f"/v1/physicalMeterElements/{element.physical_element_id}/meterIndividuals",
                          json={"meterIndividualId": meter_id, "format": fmt}, headers=AUTH)
    assert r.status_code == 201, r.text
    document = yaml.safe_load(r.text) if fmt == "yaml" else tomllib.loads(r.text)
    try:
        config = parse_adapter_config(document)
    except AdapterConfigError as exc:  # pragma: no cover - the assertion below reports it
        pytest.fail(str(exc))
    assert config.meter_individual_id == meter_id
    assert config.physical_meter_class == element.physical_meter_class

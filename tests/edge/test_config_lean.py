"""The concentrator's config, two implementations (issue 15): the lean classes of edge/config_lean.py
and devices/profiles/lean.py, and the pydantic models that define the config (edge/config_model.py,
edge/dlms/config.py, edge/modbus/config.py) and the DLMS profiles (devices/profiles/model.py,
power_quality.py, adapter_config.PropertyMapping) have the same fields and accept and refuse the
same documents, giving the same values (secrets, paths, the meters chosen by ``protocol``).

The documents are generated from the pydantic models' annotations and constraints, as in
tests/broker/test_lean_contract.py (whose generators these are), with values near every bound.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

import edge.config_model as config_model
import edge.config_lean as lean_config
import edge.dlms.config as dlms_model
import edge.modbus.config as modbus_model
import devices.adapter_config as adapter_model
import devices.profiles.lean as lean_profiles
import devices.profiles.model as profile_model
import devices.profiles.power_quality as pq_model
from broker.lean.base import Lean, Secret
from broker.lean.wire import _has_surrogate
from broker.topics import TopicError
from tests.broker.test_lean_contract import _input_names, documents, values_for

CONFIG_NAMES = ["BrokerSettings", "P1Meter", "DlmsMeter", "ModbusMeter", "PollingSettings", "BackfillSettings",
                "FirmwareSettings", "SoftwareSettings", "MetricsSettings", "PushSettings", "LiveBatchSettings",
                "LocalAdapter", "LocalListener", "ConcentratorConfig"]
PAIRS: list[tuple[type[Lean], type[BaseModel]]] = \
    [(getattr(lean_config, name), getattr(config_model, name)) for name in CONFIG_NAMES] + \
    [(lean_config.DlmsMeterConfig, dlms_model.DlmsMeterConfig)] + \
    [(getattr(lean_config, name), getattr(modbus_model, name))
     for name in ["ModbusTcpTarget", "ModbusSerialTarget", "ModbusMeterConfig"]] + \
    [(lean_profiles.PropertyMapping, adapter_model.PropertyMapping)] + \
    [(getattr(lean_profiles, name), getattr(pq_model, name))
     for name in ["PqValue", "PqCounter", "PqProfile", "PqEvent", "PqEventLog", "PowerQualitySpec"]] + \
    [(getattr(lean_profiles, name), getattr(profile_model, name)) for name in ["LoadProfileSpec", "MeterProfile"]]
IDS = [pair[0].__name__ for pair in PAIRS]


def plain(value: object) -> object:
    """A config's content as plain values (secrets opened), from either side."""
    if isinstance(value, Lean):
        return (type(value).__name__, {f.name: plain(getattr(value, f.name)) for f in value.fields})
    if isinstance(value, BaseModel):
        return (type(value).__name__, {name: plain(getattr(value, name)) for name in type(value).model_fields})
    if isinstance(value, (Secret, SecretStr)):
        return ("secret", value.get_secret_value())
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (Enum, Path)):
        return (type(value).__name__, value)
    return (type(value).__name__, value) if isinstance(value, (bool, int, float)) else value


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
def test_the_same_fields_names_defaults_and_extra_handling(lean_cls: type[Lean], model: type[BaseModel]) -> None:
    theirs = model.model_fields
    assert [f.name for f in lean_cls.fields] == list(theirs)
    for f in lean_cls.fields:
        info = theirs[f.name]
        assert f.accepted == _input_names(f.name, info), f.name
        assert f.required == info.is_required(), f.name
        if f.factory is not None:
            assert plain(f.factory()) == plain(info.default_factory()), f.name
        elif not f.required:
            assert plain(f.default) == plain(info.default), f.name
    assert lean_cls.forbid_extra == (model.model_config.get("extra") == "forbid")
    assert lean_cls.frozen == bool(model.model_config.get("frozen"))


def same(lean_cls: type[Lean], model: type[BaseModel], document: dict) -> None:
    try:
        theirs = model.model_validate(document)
    except (ValidationError, TopicError):
        theirs = None
    try:
        ours = lean_cls.validate(document)
    except ValueError:
        ours = None
    assert (ours is None) == (theirs is None), (document, ours, theirs)
    if ours is not None:
        assert plain(ours) == plain(theirs), document


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_same_documents_are_accepted_with_the_same_values(lean_cls: type[Lean], model: type[BaseModel],
                                                             data: st.DataObject) -> None:
    document = data.draw(documents(model))
    # A config comes from TOML, which cannot hold a lone surrogate (pydantic refuses one, lean does not look).
    assume(not _has_surrogate(document))
    same(lean_cls, model, document)


def _valid_dlms() -> st.SearchStrategy[dict]:
    """DLMS meter entries that mostly pass, so that the model checks (links, keys) are reached."""
    return st.fixed_dictionaries({
        "protocol": st.just("dlms"), "meter_id": st.sampled_from(["m-1", "m-2", "m/3"]),
    }, optional={
        "host": st.sampled_from(["127.0.0.1", ""]), "serial": st.sampled_from(["/dev/ttyS0", "loop://"]),
        "baudrate": st.sampled_from([9600, 300, 1234]), "transport": st.sampled_from(["tcp", "serial", "x"]),
        "security": st.sampled_from(["none", "lls", "hls-gmac"]), "password": st.sampled_from(["", "pw"]),
        "block_cipher_key": st.sampled_from(["00" * 16, "zz" * 16, "00" * 8]),
        "authentication_key": st.sampled_from(["0F" * 16, "00" * 15]),
        "master_key": st.sampled_from(["AB" * 16, "0" * 31]), "physical_address": st.sampled_from([0x10, 0x11, 5]),
    })


def _valid_p1() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"protocol": st.just("p1"), "port": st.just("loop://"),
                                  "adapter_config": st.sampled_from(["a.json", "/etc/a.json"])},
                                 optional={"smarty_key": st.sampled_from(["00" * 16, "0g" * 16, "00" * 8]),
                                           "smarty_authentication_key": st.sampled_from(["AA" * 16, "x"])})


def _valid_modbus() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"protocol": st.just("modbus"),
                                  "meterIndividualId": st.sampled_from(["m-1", "mb-1"]),
                                  "registerMap": st.just("solar-inverter")},
                                 optional={"tcp": st.just({"host": "127.0.0.1"}),
                                           "serial": st.just({"port": "/dev/ttyUSB0", "stopbits": 2})})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meters=st.lists(st.one_of(_valid_dlms(), _valid_p1(), _valid_modbus()), max_size=3),
       cid=st.sampled_from(["conc-1", "a/b", "$sys", ""]),
       local=st.one_of(st.none(), st.fixed_dictionaries({}, optional={
           "host": st.sampled_from(["127.0.0.1", "10.0.0.1"]), "ca_file": st.just("ca.pem"),
           "tls_port": st.just(8883), "tls_bind": st.just("0.0.0.0"), "tls_ca_file": st.just("ca.pem"),
           "tls_cert_file": st.just("c.pem"), "tls_key_file": st.just("k.pem"),
           "adapters": st.lists(st.fixed_dictionaries({"adapter_id": st.sampled_from(["a-1", "a-2", "a+b"]),
                                                       "adapter_config": st.just("a.json")}), max_size=2)})))
def test_whole_configs_with_meters_are_accepted_alike(meters: list[dict], cid: str, local: dict | None) -> None:
    document: dict = {"concentrator_id": cid, "meters": meters}
    if local is not None:
        document["local"] = local
    same(lean_config.ConcentratorConfig, config_model.ConcentratorConfig, document)


def test_a_secret_never_shows() -> None:
    meter = lean_config.DlmsMeterConfig.validate({"meter_id": "m-1", "host": "h", "password": "hunter2"})
    assert "hunter2" not in repr(meter) + str(meter) + meter.dump_json().decode()
    assert meter.password.get_secret_value() == "hunter2"


def test_one_definition_of_the_security_modes() -> None:
    assert dlms_model.SecurityMode is lean_config.SecurityMode


@pytest.mark.parametrize("name", ["dsmr-4.2.2", "smr-5"])
def test_the_shipped_profiles_read_the_same(name: str) -> None:
    from devices.profiles.loader import PROFILE_DIR, _resolve

    document, _ = _resolve(name, PROFILE_DIR, chain=())
    same(lean_profiles.MeterProfile, profile_model.MeterProfile, document)
    assert lean_profiles.MeterProfile.validate(document).power_quality is not None or name != "smr-5"


# A valid document of each model: the generated documents above are mostly refused (one bad field
# of many refuses the whole), so these, with one to three fields drawn from the same generators,
# put each field's accepted values (and the model checks) against a document otherwise valid.
_PQ_VALUE = {"obis": "1.0.32.7.0.255", "quantity": "voltage", "phase": "L1", "unit": "V"}
_MAPPING = {"source": "1.0.1.8.0.255", "propertyId": "energy", "unit": "kWh"}
VALID: dict[str, dict] = {
    "BrokerSettings": {}, "PollingSettings": {}, "BackfillSettings": {}, "FirmwareSettings": {},
    "SoftwareSettings": {}, "MetricsSettings": {}, "PushSettings": {}, "LiveBatchSettings": {},
    "P1Meter": {"protocol": "p1", "port": "loop://", "adapter_config": "a.yaml", "smarty_key": "00" * 16},
    "DlmsMeter": {"protocol": "dlms", "meter_id": "m-1", "host": "127.0.0.1", "password": "pw"},
    "DlmsMeterConfig": {"meter_id": "m-1", "serial": "/dev/ttyS0", "security": "hls-gmac",
                        "block_cipher_key": "00" * 16, "authentication_key": "0F" * 16},
    "ModbusMeter": {"protocol": "modbus", "meterIndividualId": "mb-1", "registerMap": "solar-inverter",
                    "tcp": {"host": "127.0.0.1"}},
    "ModbusMeterConfig": {"meter_id": "mb-1", "register_map": "x", "serial": {"port": "/dev/ttyUSB0"}},
    "ModbusTcpTarget": {"host": "h"}, "ModbusSerialTarget": {"port": "/dev/ttyUSB0"},
    "LocalAdapter": {"adapter_id": "a-1", "adapter_config": "a.yaml", "password": "pw"},
    "LocalListener": {"adapters": [{"adapter_id": "a-1", "adapter_config": "a.yaml"}]},
    "ConcentratorConfig": {"concentrator_id": "conc-1", "meters": [
        {"protocol": "dlms", "meter_id": "m-1", "host": "127.0.0.1", "security": "none"}]},
    "PropertyMapping": dict(_MAPPING),
    "PqValue": dict(_PQ_VALUE), "PqCounter": {"obis": "0.0.96.7.21.255", "kind": "sag", "phase": "L1"},
    "PqProfile": {"obis": "0.0.99.1.0.255", "columns": ["1.0.32.7.0.255"]},
    "PqEvent": {"kind": "swell", "phase": "L2"},
    "PqEventLog": {"obis": "0.0.99.98.1.255", "codes": {1: {"kind": "sag", "phase": "L1"}}},
    "PowerQualitySpec": {"values": [dict(_PQ_VALUE)],
                         "profile": {"obis": "0.0.99.1.0.255", "columns": ["1.0.32.7.0.255"]}},
    "LoadProfileSpec": {"obis": "1.0.99.1.0.255"},
    "MeterProfile": {"name": "p-1", "registers": [dict(_MAPPING)], "loadProfile": {"obis": "1.0.99.1.0.255"}},
}


def test_every_pair_has_a_valid_document() -> None:
    assert set(VALID) == set(IDS)
    for lean_cls, model in PAIRS:
        model.model_validate(VALID[lean_cls.__name__])
        lean_cls.validate(VALID[lean_cls.__name__])


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_valid_document_with_fields_changed_reads_the_same(lean_cls: type[Lean], model: type[BaseModel],
                                                            data: st.DataObject) -> None:
    document = dict(VALID[lean_cls.__name__])
    names = list(model.model_fields)
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        info = model.model_fields[name]
        for key in _input_names(name, info):
            document.pop(key, None)
        key = data.draw(st.sampled_from(_input_names(name, info)))
        document[key] = data.draw(values_for(info.annotation, list(info.metadata), 1))
    assume(not _has_surrogate(document))
    same(lean_cls, model, document)

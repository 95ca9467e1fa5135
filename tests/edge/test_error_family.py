"""Every exception class of ``broker/``, ``devices/`` and ``edge/`` is one of the kinds in broker/errors.py, so
a caller catches by meaning (a meter link down is Unavailable, a bad config Invalid)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import broker
import devices
import edge
from broker.errors import Conflict, Forbidden, GridwireError, Invalid, NotFound, Unavailable

KINDS = (NotFound, Conflict, Forbidden, Invalid, Unavailable)
# Family bases: each subclass names its kind; the base itself is raised only where no kind fits
# better (a meter failing in a way its adapter did not foresee, a command failing with a code).
FAMILY_BASES = {"edge.polling.errors.MeterError", "edge.dlms.errors.DlmsError", "edge.commands.errors.CommandFailed"}


def exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (broker, devices, edge):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


CLASSES = exception_classes()


def test_the_walk_finds_the_packages_errors() -> None:
    names = {f"{c.__module__}.{c.__qualname__}" for c in CLASSES}
    assert "broker.mqtt_types.MqttError" in names
    assert {"edge.polling.errors.MeterCommunicationError", "edge.config_lean.ConfigError", "edge.outbox.OutboxFull",
            "edge.p1.reader.P1PortError", "devices.adapter_config.AdapterConfigError",
            "devices.profiles.loader.ProfileError", "devices.modbus.register_map.RegisterMapError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_each_error_is_one_of_the_kinds(cls: type[BaseException]) -> None:
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls is GridwireError or cls in KINDS:
        return
    if name in FAMILY_BASES:
        assert issubclass(cls, GridwireError), name
    else:
        assert issubclass(cls, KINDS), f"{name} derives from {[b.__name__ for b in cls.__mro__[1:]]}"


@pytest.mark.parametrize(("name", "kind"), [
    ("edge.polling.errors.MeterCommunicationError", Unavailable),
    ("edge.dlms.errors.DlmsCommunicationError", Unavailable),
    ("edge.modbus.errors.ModbusCommunicationError", Unavailable),
    ("edge.polling.errors.MeterAuthenticationError", Forbidden),
    ("edge.polling.errors.MeterProtocolError", Invalid),
    ("edge.config.ConfigError", Invalid),
    ("edge.modbus.codec.CodecError", Invalid),
    ("devices.modbus.data_types.DataTypeError", Invalid),
    ("devices.profiles.loader.ProfileError", Invalid),
    ("edge.p1.telegram.CrcMismatch", Invalid),
    ("edge.commands.errors.InvalidParameters", Invalid),
    ("edge.commands.errors.DeviceUnreachable", Unavailable),
    ("broker.mqtt_types.ConnectError", Unavailable),
    ("broker.topics.TopicError", Invalid),
])
def test_named_errors_have_the_kind_their_meaning_says(name: str, kind: type[GridwireError]) -> None:
    module, _, cls = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), cls), kind)

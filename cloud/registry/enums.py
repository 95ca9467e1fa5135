"""Vocabulary of the device registry: device types, protocols and lifecycle states.

Pure values, no I/O, so the API layer, the core and the edge can share them.
"""

from __future__ import annotations

from enum import StrEnum


class DeviceType(StrEnum):
    """What a registered device is."""

    SMART_METER = "SMART_METER"
    STREET_LIGHT = "STREET_LIGHT"
    LOAD_CONTROL = "LOAD_CONTROL"
    INVERTER = "INVERTER"
    CONCENTRATOR = "CONCENTRATOR"
    GATEWAY = "GATEWAY"
    OTHER = "OTHER"


class Protocol(StrEnum):
    """How the platform talks to a device (the edge adapter, or MQTT for native devices)."""

    DLMS = "DLMS"
    DSMR_P1 = "DSMR_P1"
    MODBUS = "MODBUS"
    MQTT = "MQTT"


class PayloadFormat(StrEnum):
    """A concentrator's payload format when it is not Gridwire's own (which needs no setting)."""

    # The OMDP reference concentrator's flat payload (cloud/ingest/omdp_reference.py).
    OMDP_REFERENCE = "omdp-reference"


class LifecycleState(StrEnum):
    """Where a device is in its life: known, mounted in the field, talking, retired."""

    REGISTERED = "REGISTERED"
    INSTALLED = "INSTALLED"
    ACTIVE = "ACTIVE"
    DECOMMISSIONED = "DECOMMISSIONED"


class PlatformRole(StrEnum):
    """What an organisation may do on the platform itself (not on a device)."""

    # Manages organisations and may grant or revoke any device authorisation.
    ADMIN = "ADMIN"
    USER = "USER"


# Decommissioning has its own operation (it is terminal and audited), so an update may only
# move a device forward through the living states, or back to REGISTERED when it is removed
# from its location for repair.
_UPDATE_TRANSITIONS: dict[LifecycleState, frozenset[LifecycleState]] = {
    LifecycleState.REGISTERED: frozenset({LifecycleState.REGISTERED, LifecycleState.INSTALLED, LifecycleState.ACTIVE}),
    LifecycleState.INSTALLED: frozenset({LifecycleState.REGISTERED, LifecycleState.INSTALLED, LifecycleState.ACTIVE}),
    LifecycleState.ACTIVE: frozenset({LifecycleState.REGISTERED, LifecycleState.INSTALLED, LifecycleState.ACTIVE}),
    LifecycleState.DECOMMISSIONED: frozenset(),
}


def can_update_state(current: LifecycleState, target: LifecycleState) -> bool:
    """Whether an update (not a decommission) may move a device from ``current`` to ``target``."""
    return target in _UPDATE_TRANSITIONS[current]

"""Which function groups allow which device functions: the authorisation map, pure.

An organisation holds, per device, a set of function groups (OWNER, INSTALLATION, ...). A
function (a thing an organisation asks the platform to do with a device) is allowed when
any held group allows it. OWNER allows everything, including handing out authorisations.
:func:`authorise` is the whole rule with its reasons: every check that reads the registry
(the registry's own, and the core's one-query check) gathers the facts and lets it answer.

Meter data: reading stored readings (:attr:`DeviceFunction.READ_METER_DATA`, the OMDP query
API) is allowed to OWNER, AD_HOC and MONITORING. AD_HOC is for on-demand reads, MONITORING for
periodic collection, and either may look at what was collected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from cloud.registry.enums import LifecycleState


class FunctionGroup(StrEnum):
    """A bundle of device functions an organisation may be authorised for on a device."""

    OWNER = "OWNER"
    INSTALLATION = "INSTALLATION"
    AD_HOC = "AD_HOC"
    MANAGEMENT = "MANAGEMENT"
    FIRMWARE = "FIRMWARE"
    SCHEDULING = "SCHEDULING"
    CONFIGURATION = "CONFIGURATION"
    MONITORING = "MONITORING"
    METADATA_MANAGEMENT = "METADATA_MANAGEMENT"


class DeviceFunction(StrEnum):
    """One thing an organisation can ask the platform to do with a device."""

    GET_ACTUAL_METER_READS = "GET_ACTUAL_METER_READS"
    GET_PERIODIC_METER_READS = "GET_PERIODIC_METER_READS"
    READ_METER_DATA = "READ_METER_DATA"
    SET_LIGHT = "SET_LIGHT"
    GET_LIGHT_STATUS = "GET_LIGHT_STATUS"
    SET_SCHEDULE = "SET_SCHEDULE"
    SET_TARIFF_SCHEDULE = "SET_TARIFF_SCHEDULE"
    DISCONNECT = "DISCONNECT"
    RECONNECT = "RECONNECT"
    SET_LOAD = "SET_LOAD"
    SET_POWER_LIMIT = "SET_POWER_LIMIT"
    SYNCHRONIZE_TIME = "SYNCHRONIZE_TIME"
    UPDATE_FIRMWARE = "UPDATE_FIRMWARE"
    GET_FIRMWARE_VERSION = "GET_FIRMWARE_VERSION"
    SET_CONFIGURATION = "SET_CONFIGURATION"
    GET_CONFIGURATION = "GET_CONFIGURATION"
    GET_STATUS = "GET_STATUS"
    READ_ALARMS = "READ_ALARMS"
    GET_POWER_QUALITY = "GET_POWER_QUALITY"
    # Receive a device's events (app topic, webhook) and read their history.
    RECEIVE_EVENTS = "RECEIVE_EVENTS"
    GET_DEVICE = "GET_DEVICE"
    ADD_DEVICE = "ADD_DEVICE"
    UPDATE_DEVICE = "UPDATE_DEVICE"
    DECOMMISSION_DEVICE = "DECOMMISSION_DEVICE"
    SET_OWNER = "SET_OWNER"
    SET_DEVICE_AUTHORISATION = "SET_DEVICE_AUTHORISATION"
    UPDATE_KEY = "UPDATE_KEY"


G = FunctionGroup
F = DeviceFunction

# Groups other than OWNER that allow each function. An empty set means OWNER only.
_ALLOWED_BY: dict[DeviceFunction, frozenset[FunctionGroup]] = {
    F.GET_ACTUAL_METER_READS: frozenset({G.AD_HOC}),
    F.GET_PERIODIC_METER_READS: frozenset({G.AD_HOC, G.MONITORING}),
    F.READ_METER_DATA: frozenset({G.AD_HOC, G.MONITORING}),
    F.SET_LIGHT: frozenset({G.AD_HOC}),
    F.GET_LIGHT_STATUS: frozenset({G.AD_HOC, G.MONITORING}),
    F.SET_SCHEDULE: frozenset({G.SCHEDULING}),
    F.SET_TARIFF_SCHEDULE: frozenset({G.SCHEDULING}),
    F.DISCONNECT: frozenset({G.AD_HOC}),
    F.RECONNECT: frozenset({G.AD_HOC}),
    F.SET_LOAD: frozenset({G.AD_HOC}),
    F.SET_POWER_LIMIT: frozenset({G.AD_HOC, G.CONFIGURATION}),
    F.SYNCHRONIZE_TIME: frozenset({G.MANAGEMENT, G.AD_HOC}),
    F.UPDATE_FIRMWARE: frozenset({G.FIRMWARE}),
    F.GET_FIRMWARE_VERSION: frozenset({G.FIRMWARE, G.MANAGEMENT, G.MONITORING}),
    F.SET_CONFIGURATION: frozenset({G.CONFIGURATION}),
    F.GET_CONFIGURATION: frozenset({G.CONFIGURATION, G.MANAGEMENT}),
    F.GET_STATUS: frozenset({G.AD_HOC, G.MANAGEMENT, G.MONITORING}),
    F.READ_ALARMS: frozenset({G.MANAGEMENT, G.MONITORING}),
    F.GET_POWER_QUALITY: frozenset({G.AD_HOC, G.MONITORING}),
    F.RECEIVE_EVENTS: frozenset({G.MONITORING}),
    # Seeing a device's registry entry needs only some authorisation on it.
    F.GET_DEVICE: frozenset(set(FunctionGroup) - {G.OWNER}),
    F.ADD_DEVICE: frozenset({G.INSTALLATION}),
    F.UPDATE_DEVICE: frozenset({G.INSTALLATION, G.METADATA_MANAGEMENT}),
    F.DECOMMISSION_DEVICE: frozenset({G.INSTALLATION}),
    # Security-sensitive: who else may act on the device, and its keys.
    F.SET_OWNER: frozenset(),
    F.SET_DEVICE_AUTHORISATION: frozenset(),
    F.UPDATE_KEY: frozenset(),
}

ALLOWED_BY: Mapping[DeviceFunction, frozenset[FunctionGroup]] = MappingProxyType(
    {function: groups | {G.OWNER} for function, groups in _ALLOWED_BY.items()}
)

# A decommissioned device still has history an organisation may look at, and nothing else.
ALLOWED_WHEN_DECOMMISSIONED: frozenset[DeviceFunction] = frozenset({F.READ_METER_DATA, F.GET_DEVICE})


def groups_allowing(function: DeviceFunction) -> frozenset[FunctionGroup]:
    """Every function group that allows ``function`` (always including OWNER)."""
    return ALLOWED_BY[DeviceFunction(function)]


def functions_of(group: FunctionGroup) -> frozenset[DeviceFunction]:
    """Every function that ``group`` allows."""
    return frozenset(f for f, groups in ALLOWED_BY.items() if group in groups)


def is_allowed(groups: Iterable[FunctionGroup | str], function: DeviceFunction | str) -> bool:
    """Whether holding ``groups`` on a device allows ``function`` on it.

    Unknown group names allow nothing; an unknown function raises ValueError, because asking
    about a function the platform does not have is a programming error, not a denial.
    """
    allowed = groups_allowing(DeviceFunction(function))
    for group in groups:
        try:
            if FunctionGroup(group) in allowed:
                return True
        except ValueError:
            continue
    return False


def is_allowed_on(groups: Iterable[FunctionGroup | str], function: DeviceFunction | str, *,
                  decommissioned: bool) -> bool:
    """Like :func:`is_allowed`, also refusing all but history reads on a decommissioned device."""
    if decommissioned and DeviceFunction(function) not in ALLOWED_WHEN_DECOMMISSIONED:
        return False
    return is_allowed(groups, function)


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorisation answer with the reason, for the 403 body and the log."""

    allowed: bool
    reason: str


def authorise(*, organisation: str, device: str, function: DeviceFunction | str, enabled: bool | None,
           state: LifecycleState | None, held: Iterable[FunctionGroup | str]) -> Decision:
    """Whether ``organisation`` may do ``function`` on ``device``, and why: the one rule.

    ``enabled`` is None when the organisation does not exist, ``state`` None when the device
    is not registered; ``held`` are the groups the organisation holds on the device. Only an
    existing, enabled organisation may act, only on a registered device, only through a held
    group that allows the function, and on a decommissioned device only to read its history.
    """
    function = DeviceFunction(function)
    if enabled is None:
        return Decision(False, f"organisation {organisation!r} does not exist")
    if not enabled:
        return Decision(False, f"organisation {organisation!r} is disabled")
    if state is None:
        return Decision(False, f"device {device!r} is not registered")
    held = frozenset(held)
    decommissioned = state is LifecycleState.DECOMMISSIONED
    if is_allowed_on(held, function, decommissioned=decommissioned):
        return Decision(True, f"{function} allowed by [{', '.join(sorted(held & groups_allowing(function)))}]")
    if decommissioned and is_allowed(held, function):
        return Decision(False, f"device {device!r} is decommissioned; {function} is no longer possible")
    needed = ", ".join(sorted(groups_allowing(function)))
    return Decision(False, f"organisation {organisation!r} needs one of [{needed}] on device {device!r} "
                           f"for {function}; it holds [{', '.join(sorted(held))}]")


def within_scope(scope: Iterable[FunctionGroup | str] | None, function: DeviceFunction | str) -> Decision:
    """Whether a credential limited to the groups ``scope`` (None: not limited) may ask for
    ``function`` at all. The registry still decides, device by device, whether the organisation
    may (:func:`authorise`); a scope only narrows what its credential can ask for."""
    function = DeviceFunction(function)
    if scope is None:
        return Decision(True, "credential not limited")
    limited = sorted(FunctionGroup(g) for g in scope)
    if is_allowed(limited, function):
        return Decision(True, f"{function} within the credential's scope")
    return Decision(False, f"this credential is limited to [{', '.join(limited)}]; {function} needs one of "
                           f"[{', '.join(sorted(groups_allowing(function)))}]")

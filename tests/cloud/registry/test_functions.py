"""The function-group map: properties that must hold for any set of groups and any function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.registry.enums import LifecycleState
from cloud.registry.functions import (
    ALLOWED_BY,
    ALLOWED_WHEN_DECOMMISSIONED,
    Decision,
    DeviceFunction,
    FunctionGroup,
    authorise,
    functions_of,
    groups_allowing,
    is_allowed,
    is_allowed_on,
)

groups = st.frozensets(st.sampled_from(list(FunctionGroup)))
functions = st.sampled_from(list(DeviceFunction))


def test_every_function_is_mapped() -> None:
    assert set(ALLOWED_BY) == set(DeviceFunction)


@given(functions)
def test_owner_allows_everything(function: DeviceFunction) -> None:
    assert is_allowed({FunctionGroup.OWNER}, function)
    assert FunctionGroup.OWNER in groups_allowing(function)


@given(functions)
def test_no_groups_allow_nothing(function: DeviceFunction) -> None:
    assert not is_allowed(frozenset(), function)


@given(groups, groups, functions)
def test_more_groups_never_allow_less(held: frozenset[FunctionGroup], extra: frozenset[FunctionGroup],
                                      function: DeviceFunction) -> None:
    if is_allowed(held, function):
        assert is_allowed(held | extra, function)


@given(groups, functions)
def test_allowed_exactly_when_a_held_group_allows_it(held: frozenset[FunctionGroup], function: DeviceFunction) -> None:
    assert is_allowed(held, function) == any(function in functions_of(g) for g in held)
    assert is_allowed(held, function) == bool(held & groups_allowing(function))


@given(groups, functions)
def test_string_names_work_like_members(held: frozenset[FunctionGroup], function: DeviceFunction) -> None:
    assert is_allowed([str(g) for g in held], str(function)) == is_allowed(held, function)


@given(st.lists(st.text(max_size=12)), functions)
def test_unknown_group_names_allow_nothing(names: list[str], function: DeviceFunction) -> None:
    unknown = [n for n in names if n not in set(FunctionGroup)]
    assert not is_allowed(unknown, function)


@given(groups, functions)
def test_decommissioned_devices_allow_only_history(held: frozenset[FunctionGroup], function: DeviceFunction) -> None:
    allowed = is_allowed_on(held, function, decommissioned=True)
    assert allowed == (function in ALLOWED_WHEN_DECOMMISSIONED and is_allowed(held, function))


def test_security_functions_are_owner_only() -> None:
    for function in (DeviceFunction.SET_OWNER, DeviceFunction.SET_DEVICE_AUTHORISATION, DeviceFunction.UPDATE_KEY):
        assert groups_allowing(function) == {FunctionGroup.OWNER}


def test_meter_data_groups_are_the_documented_ones() -> None:
    assert groups_allowing(DeviceFunction.READ_METER_DATA) == {
        FunctionGroup.OWNER, FunctionGroup.AD_HOC, FunctionGroup.MONITORING}


def test_sample_of_the_map() -> None:
    assert is_allowed({FunctionGroup.SCHEDULING}, DeviceFunction.SET_TARIFF_SCHEDULE)
    assert not is_allowed({FunctionGroup.SCHEDULING}, DeviceFunction.SET_LIGHT)
    assert is_allowed({FunctionGroup.FIRMWARE}, DeviceFunction.UPDATE_FIRMWARE)
    assert not is_allowed({FunctionGroup.MONITORING}, DeviceFunction.DISCONNECT)
    assert is_allowed({FunctionGroup.INSTALLATION}, DeviceFunction.DECOMMISSION_DEVICE)
    assert is_allowed({FunctionGroup.METADATA_MANAGEMENT}, DeviceFunction.UPDATE_DEVICE)
    assert not is_allowed({FunctionGroup.METADATA_MANAGEMENT}, DeviceFunction.DECOMMISSION_DEVICE)


# --- the whole decision, against the rule written out independently -------------------------------

# Who may do what, written out by hand from the function groups' documented meaning (not read
# from ALLOWED_BY): the groups besides OWNER that allow each function.
SPEC: dict[str, set[str]] = {
    "GET_ACTUAL_METER_READS": {"AD_HOC"},
    "GET_PERIODIC_METER_READS": {"AD_HOC", "MONITORING"},
    "READ_METER_DATA": {"AD_HOC", "MONITORING"},
    "SET_LIGHT": {"AD_HOC"},
    "GET_LIGHT_STATUS": {"AD_HOC", "MONITORING"},
    "SET_SCHEDULE": {"SCHEDULING"},
    "SET_TARIFF_SCHEDULE": {"SCHEDULING"},
    "DISCONNECT": {"AD_HOC"},
    "RECONNECT": {"AD_HOC"},
    "SET_LOAD": {"AD_HOC"},
    "SET_POWER_LIMIT": {"AD_HOC", "CONFIGURATION"},
    "SYNCHRONIZE_TIME": {"AD_HOC", "MANAGEMENT"},
    "UPDATE_FIRMWARE": {"FIRMWARE"},
    "GET_FIRMWARE_VERSION": {"FIRMWARE", "MANAGEMENT", "MONITORING"},
    "SET_CONFIGURATION": {"CONFIGURATION"},
    "GET_CONFIGURATION": {"CONFIGURATION", "MANAGEMENT"},
    "GET_STATUS": {"AD_HOC", "MANAGEMENT", "MONITORING"},
    "READ_ALARMS": {"MANAGEMENT", "MONITORING"},
    "GET_POWER_QUALITY": {"AD_HOC", "MONITORING"},
    "RECEIVE_EVENTS": {"MONITORING"},
    "GET_DEVICE": {"INSTALLATION", "AD_HOC", "MANAGEMENT", "FIRMWARE", "SCHEDULING", "CONFIGURATION",
                   "MONITORING", "METADATA_MANAGEMENT"},
    "ADD_DEVICE": {"INSTALLATION"},
    "UPDATE_DEVICE": {"INSTALLATION", "METADATA_MANAGEMENT"},
    "DECOMMISSION_DEVICE": {"INSTALLATION"},
    "SET_OWNER": set(),
    "SET_DEVICE_AUTHORISATION": set(),
    "UPDATE_KEY": set(),
}
HISTORY = {"READ_METER_DATA", "GET_DEVICE"}


def expected(*, enabled: bool | None, state: LifecycleState | None, held: set[str], function: str) -> bool:
    """The rule as a person states it: an existing, enabled organisation, a registered device, a held
    group that allows the function (OWNER allows all), and only history on a retired device."""
    if enabled is not True or state is None:
        return False
    if state == "DECOMMISSIONED" and function not in HISTORY:
        return False
    return "OWNER" in held or any(group in SPEC[function] for group in held)


def test_the_table_names_every_function() -> None:
    assert set(SPEC) == {str(f) for f in DeviceFunction}


def test_every_group_set_on_every_function_by_brute_force() -> None:
    """All 2^9 sets of groups on every function and device state: 51,200 decisions."""
    names = [str(g) for g in FunctionGroup]
    for mask in range(1 << len(names)):
        held = {name for i, name in enumerate(names) if mask >> i & 1}
        for function in DeviceFunction:
            for state in LifecycleState:
                decision = authorise(organisation="o", device="d", function=function, enabled=True, state=state,
                                     held=held)
                assert decision.allowed == expected(enabled=True, state=state, held=held, function=str(function)), \
                    (sorted(held), function, state, decision.reason)


enabled_states = st.sampled_from([None, False, True])
device_states = st.sampled_from([None, *LifecycleState])
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@given(enabled_states, device_states, st.sets(st.sampled_from([str(g) for g in FunctionGroup]) | names),
       functions, names, names)
def test_decision_follows_the_rule_and_says_why(enabled: bool | None, state: LifecycleState | None, held: set[str],
                                                function: DeviceFunction, organisation: str, device: str) -> None:
    decision = authorise(organisation=organisation, device=device, function=function, enabled=enabled, state=state,
                         held=held)
    assert decision.allowed == expected(enabled=enabled, state=state, held=held, function=str(function))
    if decision.allowed:
        # An answer names the held groups that allow it, and only those.
        allowing = sorted(held & ({"OWNER"} | SPEC[str(function)]))
        assert decision.reason == f"{function} allowed by [{', '.join(allowing)}]"
    elif enabled is None or enabled is False:
        assert repr(organisation) in decision.reason
    elif state is None:
        assert decision.reason == f"device {device!r} is not registered"
    elif state == "DECOMMISSIONED" and expected(enabled=True, state=LifecycleState.ACTIVE, held=held,
                                                function=str(function)):
        assert "decommissioned" in decision.reason
    else:
        # A refusal for want of a group says which groups would do.
        needed = ", ".join(sorted({"OWNER"} | SPEC[str(function)]))
        assert f"needs one of [{needed}]" in decision.reason


@given(functions)
def test_unknown_organisation_is_refused_before_anything_else(function: DeviceFunction) -> None:
    decision = authorise(organisation="ghost", device="d", function=function, enabled=None, state=None,
                         held={"OWNER"})
    assert decision == Decision(False, "organisation 'ghost' does not exist")


def test_an_unknown_function_is_an_error_not_a_refusal() -> None:
    with pytest.raises(ValueError):
        authorise(organisation="o", device="d", function="FLY", enabled=True, state=LifecycleState.ACTIVE,
                  held={"OWNER"})

"""The function-group map: properties that must hold for any set of groups and any function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud.registry.functions import (
    ALLOWED_BY,
    ALLOWED_WHEN_DECOMMISSIONED,
    DeviceFunction,
    FunctionGroup,
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

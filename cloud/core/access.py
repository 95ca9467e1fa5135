"""Authorisation checks on the command path in one database round trip, for one device or many.

:meth:`cloud.registry.Registry.permission` reads the organisation, the device and the held
groups in three queries; on the hot path (every switch command is checked by the API and
again by the core) that is most of the work. Here one joined query answers the common case;
when the organisation or the device is unknown or disabled (rare: the request is refused
anyway) the registry's own check produces the precise reason. Either way the decision is the
registry's one pure rule, :func:`cloud.registry.functions.authorise`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, select, true

from cloud.group_commit import GroupCommit
from cloud.held import autocommit, connect  # noqa: F401 - autocommit: imported from here too
from cloud.registry import Decision, DeviceFunction, FunctionGroup, LifecycleState, Protocol, Registry, Route
from cloud.registry.schemas import reached_through
from cloud.registry.functions import authorise
from cloud.registry.models import Device, DeviceAuthorisation, Organisation


@dataclass(frozen=True, slots=True)
class Access:
    """What the core needs to know to send a command: may the organisation, and how to reach the device."""

    decision: Decision
    route: Route | None  # None when the device is unknown, or the organisation unknown or disabled


# Built once: constructing a statement costs more CPU than executing a cached one.
_QUERY = (select(Device.identification, Device.state, Device.concentrator_id, Device.protocol,
                 Device.protocol_version, DeviceAuthorisation.function_group, Device.device_type)
          .select_from(Organisation).join(Device, true())
          .outerjoin(DeviceAuthorisation, and_(DeviceAuthorisation.device_id == Device.id,
                                               DeviceAuthorisation.organisation_id == Organisation.id))
          .where(Organisation.identification == bindparam("org"), Organisation.enabled.is_(True),
                 Device.identification.in_(bindparam("devices", expanding=True))))


async def accesses(registry: Registry, organisation: str, devices: Iterable[str],
                   function: DeviceFunction) -> dict[str, Access]:
    """Whether ``organisation`` may do ``function`` on each of ``devices`` and their routes, in one query."""
    function = DeviceFunction(function)
    wanted = sorted(set(devices))
    if not wanted:
        return {}
    # Autocommit: one read needs no BEGIN/ROLLBACK round trips around it.
    async with connect(registry.engine) as conn:
        rows = (await conn.execute(_QUERY, {"org": organisation, "devices": wanted})).all()
    found: dict[str, tuple[LifecycleState, Route]] = {}
    held: dict[str, set[FunctionGroup]] = {}
    for identification, state, concentrator, protocol, version, group, device_type in rows:
        found[identification] = (LifecycleState(state), Route(
            device_id=identification, concentrator_id=reached_through(identification, device_type, concentrator),
            protocol=Protocol(protocol), protocol_version=version))
        groups = held.setdefault(identification, set())
        if group is not None:
            groups.add(FunctionGroup(group))
    # Only an enabled organisation's rows are found (the query's condition).
    answer = {d: Access(authorise(organisation=organisation, device=d, function=function, enabled=True,
                               state=found[d][0], held=held[d]), found[d][1])
              for d in wanted if d in found}
    for missing in (d for d in wanted if d not in found):
        # Unknown or disabled organisation, or unknown device: let the registry say which.
        answer[missing] = Access(await registry.permission(organisation, missing, function), None)
    return answer


async def permissions(registry: Registry, organisation: str, devices: Iterable[str],
                      function: DeviceFunction) -> dict[str, Decision]:
    """Whether ``organisation`` may do ``function`` on each of ``devices``, in one query."""
    return {d: a.decision for d, a in (await accesses(registry, organisation, devices, function)).items()}


async def permission(registry: Registry, organisation: str, device: str, function: DeviceFunction) -> Decision:
    """Whether ``organisation`` may do ``function`` on ``device``, usually in one query; checks
    asked while another runs share the next query (a group commit's read: the web API under a
    burst of single requests)."""
    checks = _checks.get(registry)
    if checks is None:
        checks = _checks[registry] = GroupCommit(functools.partial(_decide_all, registry), name="access-checks")
    return await checks((organisation, device, DeviceFunction(function)))


# One batch of checks per registry (so per process); dropped with the registry.
_checks: weakref.WeakKeyDictionary[Registry, GroupCommit[tuple[str, str, DeviceFunction], Decision]] = (
    weakref.WeakKeyDictionary())


async def _decide_all(registry: Registry, checks: Sequence[tuple[str, str, DeviceFunction]]) -> list[Decision]:
    """Each check's decision, with one query per organisation and function asked."""
    wanted: dict[tuple[str, DeviceFunction], set[str]] = {}
    for organisation, device, function in checks:
        wanted.setdefault((organisation, function), set()).add(device)
    found = {(organisation, device, function): access.decision
             for (organisation, function), devices in wanted.items()
             for device, access in (await accesses(registry, organisation, devices, function)).items()}
    return [found[check] for check in checks]

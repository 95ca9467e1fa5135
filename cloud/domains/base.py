"""What a functional domain is: named operations, each a device function and a pure translation.

A new domain is a new ``cloud/domains/<name>/translator.py`` defining a :class:`Domain` (listed in
``cloud/domains/catalogue.py``), plus its routes in ``cloud/api/routes/<name>.py``; the generic
consumer and the notification layer need no change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.registry.functions import DeviceFunction


class OperationParams(BaseModel):
    """Base of an operation's parameters: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NoParams(OperationParams):
    """An operation that takes no parameters."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One generic command a functional request becomes (before it gets ids and times)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


def merge_results(results: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The default functional result: the last command's result (devices answer their state)."""
    merged: dict[str, Any] = {}
    for result in results.values():
        merged.update(result or {})
    return merged


@dataclass(frozen=True, slots=True)
class Operation:
    """A functional operation ("setLight"): the function it needs and how it becomes commands."""

    name: str
    function: DeviceFunction
    params: type[OperationParams]
    translate: Callable[[Any], list[CommandSpec]]
    summarise: Callable[[Mapping[str, dict[str, Any] | None]], dict[str, Any]] = merge_results

    def commands(self, raw: Mapping[str, Any]) -> list[CommandSpec]:
        """Validate ``raw`` parameters (pydantic ValidationError if bad) and translate them."""
        return self.translate(self.params.model_validate(dict(raw)))


@dataclass(frozen=True, slots=True)
class Domain:
    """A functional domain and its operations by name."""

    name: str
    operations: Mapping[str, Operation]

    def operation(self, name: str) -> Operation:
        try:
            return self.operations[name]
        except KeyError:
            raise KeyError(f"domain {self.name!r} has no operation {name!r}") from None


def command_ids(correlation_id: str, count: int) -> list[str]:
    """The ids of a request's commands, derived from its id, so a redelivery makes the same ones."""
    base = uuid.UUID(correlation_id)
    return [str(uuid.uuid5(base, str(i))) for i in range(count)]

"""The core's errors are kinds of the one error family (broker/errors.py)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cloud.core
from broker.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from cloud.core.consumer import Rejected
from cloud.core.lifecycle import InvalidTransition

KINDS = (NotFound, Conflict, Forbidden, Invalid, Unavailable)


def test_every_exception_the_core_defines_is_one_of_the_kinds() -> None:
    defined = []
    for info in pkgutil.walk_packages(cloud.core.__path__, prefix="cloud.core."):
        module = importlib.import_module(info.name)
        defined += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, BaseException) and cls.__module__ == info.name]
    assert {Rejected, InvalidTransition} <= set(defined)
    assert [c.__qualname__ for c in defined if not issubclass(c, KINDS)] == []


def test_bad_input_and_impossible_transitions_are_invalid() -> None:
    # Invalid is also a ValueError: callers that caught ValueError before still do.
    assert issubclass(Rejected, Invalid) and issubclass(InvalidTransition, ValueError)

"""DLMS meter profiles as data: which COSEM objects to read and how each maps to OMDP properties."""

from typing import Any

from devices.profiles.loader import ProfileError, load_profile

__all__ = ["MeterProfile", "ProfileError", "load_profile"]


def __getattr__(name: str) -> Any:
    """``MeterProfile``, the pydantic definition, on first use (the concentrator reads profiles
    with :mod:`devices.profiles.lean` and loads no pydantic)."""
    if name == "MeterProfile":
        from devices.profiles.model import MeterProfile

        return MeterProfile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

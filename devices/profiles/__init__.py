"""DLMS meter profiles as data: which COSEM objects to read and how each maps to OMDP properties."""

from devices.profiles.loader import MeterProfile, ProfileError, load_profile

__all__ = ["MeterProfile", "ProfileError", "load_profile"]

"""Gridwire firmware_ota layer."""

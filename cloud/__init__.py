"""Gridwire cloud layer."""

"""Gridwire edge layer."""

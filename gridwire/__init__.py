"""Gridwire gridwire layer."""

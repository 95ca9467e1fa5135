"""Gridwire broker layer."""

"""Tests of the edge layer."""

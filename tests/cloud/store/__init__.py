"""Tests of the time-series store."""

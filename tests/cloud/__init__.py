"""Tests of the cloud services."""

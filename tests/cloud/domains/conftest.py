"""Fixtures for the domain tests: the same running platform as the core tests."""

from tests.cloud.core.conftest import sqlite_url, stack  # noqa: F401 - pytest fixtures

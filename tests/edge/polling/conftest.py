"""Fixtures for the poller tests: fail any test that leaves a task running."""

from __future__ import annotations

from tests.fixtures.tasks import no_leaked_tasks  # noqa: F401 - autouse fixture

import asyncio
from collections.abc import AsyncIterator

import pytest



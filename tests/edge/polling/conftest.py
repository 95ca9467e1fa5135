"""Fixtures for the poller tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest



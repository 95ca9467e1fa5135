"""Shared test set-up: real services (Mosquitto, influxd, PostgreSQL) as fixtures, and a guard
that fails any test leaving tasks, threads or child processes running (tests/fixtures/leaks.py)."""

pytest_plugins = [
    "tests.fixtures.leaks",
    "pytester",  # runs the leak guard's own test suite in a pytest of its own
    "tests.fixtures.mosquitto",
    "tests.fixtures.influx",
    "tests.fixtures.postgres",
    "tests.fixtures.ingest",
    "tests.fixtures.prometheus",
    "tests.fixtures.demo",
]

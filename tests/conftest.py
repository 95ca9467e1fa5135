"""Shared test set-up: real services (Mosquitto, influxd, PostgreSQL) as fixtures."""

pytest_plugins = [
    "tests.fixtures.mosquitto",
    "tests.fixtures.influx",
    "tests.fixtures.postgres",
    "tests.fixtures.ingest",
]

"""The Grafana dashboard compose provisions (config/grafana/) asks InfluxDB only what it holds:
every InfluxQL query in the dashboard's JSON, run against the demo's real influxd after a real
Prometheus scraped every demo process and remote-wrote the samples into it (as compose does,
config/prometheus/prometheus.yml), returns data."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from gridwire.demo import METRICS_ORDER, meter_id
from tests.fixtures.demo import Demo
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "config" / "grafana" / "dashboards" / "gridwire.json").read_text())
SOURCES = yaml.safe_load((ROOT / "config" / "grafana" / "provisioning" / "datasources" / "gridwire.yaml").read_text())
DATABASES = {source["uid"]: source["database"] for source in SOURCES["datasources"]}
METRICS_DB = DATABASES["influx-metrics"]


def grafana_macros(query: str, meter: str) -> str:
    """The query as Grafana sends it: its time filter, interval and the chosen meter filled in."""
    return (query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "5s")
            .replace("$meter", meter))


def series_of(influx: httpx.Client, database: str, query: str) -> list[dict]:
    answer = influx.post("/query", data={"db": database, "q": query}).raise_for_status().json()
    result = answer["results"][0]
    assert "error" not in result, (query, result["error"])
    return result.get("series", [])


def has_values(series: list[dict]) -> bool:
    return any(value is not None for s in series for row in s["values"] for value in row[1:])


def test_every_dashboard_query_returns_data(demo: Demo, prometheus) -> None:
    panels = {panel["title"] for panel in DASHBOARD["panels"]}
    for needed in ("Ingest rate", "Ingest lag", "Fleet online", "Readings of meter", "Command latency",
                   "Campaign progress"):
        assert any(title.startswith(needed) for title in panels), needed
    # A command, so the core's latency histogram has observations.
    accepted = demo.api.post("/v1/publiclighting/devices/light-2/light", json={"on": True, "dimLevel": 50})
    assert accepted.status_code == 202, accepted.text
    with httpx.Client(base_url=demo.influx_url, timeout=10) as influx:
        influx.post("/query", data={"q": f'CREATE DATABASE "{METRICS_DB}"'}).raise_for_status()
        prometheus({name: [f"127.0.0.1:{demo.metrics_port + n}"] for n, name in enumerate(METRICS_ORDER)},
                   remote_write=f"{demo.influx_url}/api/v1/prom/write?db={METRICS_DB}")
        meters = series_of(influx, DATABASES["influx-readings"],
                           DASHBOARD["templating"]["list"][0]["query"])
        assert [meter_id(0)] in meters[0]["values"] or any(meter_id(0) in row for row in meters[0]["values"])
        queries = [(panel["title"], DATABASES[target["datasource"]["uid"]],
                    grafana_macros(target["query"], meter_id(0)))
                   for panel in DASHBOARD["panels"] for target in panel["targets"]]
        assert len(queries) >= 7
        for title, database, query in queries:
            wait_until(lambda: has_values(series_of(influx, database, query)), timeout=90, interval=1.0,
                       what=f"data for {title!r}: {query}")

"""The metrics registry renders what Prometheus's own checker accepts, counts what it is told,
bounds its label sets, and its HTTP endpoint serves it (and nothing else)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.metrics import OTHER, MetricError, Registry, process_metrics
from broker.metrics_http import CONTENT_TYPE, MetricsServer


def promtool_check(text: bytes) -> str:
    """``promtool check metrics`` (Debian's prometheus package) on an exposition; its complaints."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/install.sh)"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False)
    assert done.returncode in (0, 3), done.stderr  # 3: lint warnings only
    return (done.stdout + done.stderr).decode()


def sample_registry() -> Registry:
    registry = Registry()
    process_metrics(registry, "test")
    requests = registry.counter("gridwire_test_requests", "Requests by kind", ["kind"])
    requests.labels("a").inc(3)
    requests.labels('we"ird\\\n').inc()
    latency = registry.histogram("gridwire_test_seconds", "Latency", ["op"])
    latency.labels("x").observe(0.003)
    latency.labels("x").observe(42)
    registry.gauge("gridwire_test_depth", "Depth").set(7.5)
    registry.gauge_fn("gridwire_test_sampled", "Sampled by label", lambda: {("p",): 1, ("q",): 2}, labels=["k"])
    return registry


async def test_the_exposition_passes_promtool_and_holds_the_values() -> None:
    text = await sample_registry().render()
    complaints = promtool_check(text)
    assert "error" not in complaints.lower(), complaints
    lines = text.decode().splitlines()
    assert 'gridwire_test_requests_total{kind="a"} 3' in lines
    assert 'gridwire_test_requests_total{kind="we\\"ird\\\\\\n"} 1' in lines
    assert 'gridwire_test_seconds_bucket{op="x",le="0.005"} 1' in lines
    assert 'gridwire_test_seconds_bucket{op="x",le="+Inf"} 2' in lines
    assert 'gridwire_test_seconds_count{op="x"} 2' in lines
    assert 'gridwire_test_seconds_sum{op="x"} 42.003' in lines
    assert "gridwire_test_depth 7.5" in lines
    assert 'gridwire_test_sampled{k="q"} 2' in lines
    assert 'gridwire_process_info{process="test"} 1' in lines


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=50))
def test_a_histogram_counts_every_observation_once(values: list[float]) -> None:
    histogram = Registry().histogram("h", "h")
    for value in values:
        histogram.observe(value)
    assert histogram.count() == len(values)
    assert histogram.total() == pytest.approx(sum(values))


def test_label_sets_are_bounded() -> None:
    counter = Registry().counter("c", "c", ["who"], max_series=3)
    for n in range(10):
        counter.labels(f"meter-{n}").inc()
    assert counter.value("meter-0") == 1 and counter.value("meter-2") == 1
    assert counter.value(OTHER) == 7


def test_bad_definitions_are_refused() -> None:
    registry = Registry()
    registry.counter("ok", "ok")
    for bad in (lambda: registry.counter("ok", "twice"), lambda: registry.counter("1bad", "x"),
                lambda: registry.gauge("g", "g", ["le"]), lambda: registry.counter("c", "c", ["a"]).labels("x", "y")):
        with pytest.raises(MetricError):
            bad()


async def test_the_endpoint_serves_metrics_only() -> None:
    registry = sample_registry()
    server = MetricsServer(registry=registry, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            answer = await http.get("/metrics")
            assert answer.status_code == 200 and answer.headers["content-type"] == CONTENT_TYPE
            assert 'gridwire_test_requests_total{kind="a"} 3' in answer.text.splitlines()
            assert (await http.get("/")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
        # A client that connects and says nothing is dropped without holding anything up.
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{server.port}/metrics")).status_code == 200
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()
    assert server.scrapes == 2

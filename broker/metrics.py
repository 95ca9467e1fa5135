"""Prometheus metrics without a third-party client: counters, gauges and histograms in a
registry, rendered in the text exposition format (version 0.0.4).

Why our own: the concentrator imports gurux-dlms (GPLv2-only) and ``prometheus_client`` is
Apache-2.0, which may not be linked with it; the format is small. Edge and cloud both use this
module (``broker/`` sits below both), so every process speaks the same format.

Cheap on hot paths: ``inc``/``observe`` are a few attribute operations, with no lock (one event
loop per process). Counts a component already keeps (``batcher.written``) are read at scrape
time by a *callback* metric instead of being counted twice. Labels are bounded: a metric takes
at most ``max_series`` label sets; the rest are folded into one series whose every label is
``other`` (and a warning is logged once), so a bug cannot grow a scrape without bound.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Union

from broker.errors import Invalid

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
OTHER = "other"
DEFAULT_MAX_SERIES = 200
# Seconds: from a millisecond (a PUBACK) to two minutes (a slow command or a backlog's lag).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 20_000, 50_000)

LabelValues = tuple[str, ...]
# A callback's value: one number, or numbers by label values.
Sampled = Union[float, Mapping[LabelValues, float]]
Sampler = Callable[[], Sampled]
AsyncSampler = Callable[[], Awaitable[Sampled]]


class MetricError(Invalid):
    """A metric defined with a bad name, labels or buckets (a programming error)."""


def _check_name(name: str, labels: Sequence[str]) -> None:
    if not _NAME.match(name):
        raise MetricError(f"bad metric name {name!r}")
    for label in labels:
        if not _LABEL.match(label) or label.startswith("__") or label == "le":
            raise MetricError(f"bad label name {label!r} on {name}")


def _format(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, documentation: str, labels: Sequence[str], max_series: int) -> None:
        _check_name(name, labels)
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(labels)
        self.max_series = max_series
        self._warned = False

    def _key(self, values: tuple[str, ...], known: Mapping[LabelValues, object]) -> LabelValues:
        if len(values) != len(self.label_names):
            raise MetricError(f"{self.name} takes labels {self.label_names}, got {values}")
        if values in known or len(known) < self.max_series:
            return values
        if not self._warned:
            self._warned = True
            log.warning("metric %s reached %d label sets; further ones are counted as %r", self.name,
                        self.max_series, OTHER)
        return (OTHER,) * len(values)

    def header(self) -> list[str]:
        name = f"{self.name}_total" if self.kind == "counter" else self.name
        return [f"# HELP {name} {_escape(self.documentation)}", f"# TYPE {name} {self.kind}"]


class Counter(_Metric):
    """A count that only goes up (exposed as ``<name>_total``; give the name without it)."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (),
                 max_series: int = DEFAULT_MAX_SERIES) -> None:
        super().__init__(name, documentation, labels, max_series)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0) -> None:
        self._values[()] += amount

    def labels(self, *values: str) -> _CounterChild:
        return _CounterChild(self, self._key(values, self._values))

    def value(self, *values: str) -> float:
        return self._values.get(tuple(values), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}_total{_labels(self.label_names, k)} {_format(v)}" for k, v in self._values.items()]


class _CounterChild:
    __slots__ = ("_key", "_values")

    def __init__(self, parent: Counter, key: LabelValues) -> None:
        self._values = parent._values
        self._key = key
        self._values.setdefault(key, 0.0)

    def inc(self, amount: float = 1.0) -> None:
        self._values[self._key] += amount


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (),
                 max_series: int = DEFAULT_MAX_SERIES) -> None:
        super().__init__(name, documentation, labels, max_series)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def set(self, value: float, *values: str) -> None:
        self._values[self._key(tuple(values), self._values)] = float(value)

    def inc(self, amount: float = 1.0, *values: str) -> None:
        key = self._key(tuple(values), self._values)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *values: str) -> float:
        return self._values.get(tuple(values), 0.0)

    def clear(self) -> None:
        """Forget every label set (before setting the current ones again)."""
        self._values = {} if self.label_names else {(): 0.0}

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {_format(v)}" for k, v in self._values.items()]


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS, max_series: int = DEFAULT_MAX_SERIES) -> None:
        super().__init__(name, documentation, labels, max_series)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds):
            raise MetricError(f"{name}: buckets must be distinct and not empty")
        self.bounds = tuple(b for b in bounds if not math.isinf(b))
        # Per label set: [count per bucket (not cumulative) ..., +Inf bucket, sum]
        self._series: dict[LabelValues, list[float]] = {}
        if not labels:
            self._series[()] = [0.0] * (len(self.bounds) + 2)

    def observe(self, value: float) -> None:
        self._observe(self._series[()], value)

    def labels(self, *values: str) -> _HistogramChild:
        key = self._key(values, self._series)
        series = self._series.setdefault(key, [0.0] * (len(self.bounds) + 2))
        return _HistogramChild(self, series)

    def _observe(self, series: list[float], value: float) -> None:
        index = len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                index = i
                break
        series[index] += 1
        series[-1] += value

    def count(self, *values: str) -> float:
        series = self._series.get(tuple(values))
        return sum(series[:-1]) if series else 0.0

    def total(self, *values: str) -> float:
        series = self._series.get(tuple(values))
        return series[-1] if series else 0.0

    def samples(self) -> list[str]:
        lines = []
        for key, series in self._series.items():
            running = 0.0
            for bound, count in zip((*self.bounds, math.inf), series[:-1], strict=True):
                running += count
                le = 'le="' + _format(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_format(running)}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_format(series[-1])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_format(running)}")
        return lines


class _HistogramChild:
    __slots__ = ("_parent", "_series")

    def __init__(self, parent: Histogram, series: list[float]) -> None:
        self._parent = parent
        self._series = series

    def observe(self, value: float) -> None:
        self._parent._observe(self._series, value)


class _Callback(_Metric):
    """A counter or gauge whose value is read when scraped (from a count kept elsewhere)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], kind: str,
                 sample: Sampler | None, sample_async: AsyncSampler | None) -> None:
        super().__init__(name, documentation, labels, DEFAULT_MAX_SERIES)
        self.kind = kind
        self._sample = sample
        self._sample_async = sample_async
        self._last: Sampled = 0.0

    async def refresh(self) -> None:
        try:
            if self._sample is not None:
                self._last = self._sample()
            elif self._sample_async is not None:
                self._last = await self._sample_async()
        except Exception as exc:  # noqa: BLE001 - a failing sampler must not break the scrape of the others
            log.warning("metric %s could not be sampled: %s", self.name, exc)

    def samples(self) -> list[str]:
        suffix = "_total" if self.kind == "counter" else ""
        value = self._last
        if isinstance(value, Mapping):
            items = list(value.items())[:self.max_series]
            return [f"{self.name}{suffix}{_labels(self.label_names, k)} {_format(v)}" for k, v in items]
        return [f"{self.name}{suffix} {_format(value)}"]


class Registry:
    """The metrics of one process (or one component of the demo's single process), by name."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise MetricError(f"metric {metric.name} is defined twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labels: Sequence[str] = (), *,
                max_series: int = DEFAULT_MAX_SERIES) -> Counter:
        return self._add(Counter(name, documentation, labels, max_series))  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = (), *,
              max_series: int = DEFAULT_MAX_SERIES) -> Gauge:
        return self._add(Gauge(name, documentation, labels, max_series))  # type: ignore[return-value]

    def histogram(self, name: str, documentation: str, labels: Sequence[str] = (), *,
                  buckets: Sequence[float] = LATENCY_BUCKETS, max_series: int = DEFAULT_MAX_SERIES) -> Histogram:
        return self._add(Histogram(name, documentation, labels, buckets, max_series))  # type: ignore[return-value]

    def counter_fn(self, name: str, documentation: str, sample: Sampler, labels: Sequence[str] = ()) -> None:
        """A counter read from ``sample()`` at each scrape (a count the component keeps anyway)."""
        self._add(_Callback(name, documentation, labels, "counter", sample, None))

    def gauge_fn(self, name: str, documentation: str, sample: Sampler | None = None, labels: Sequence[str] = (), *,
                 sample_async: AsyncSampler | None = None) -> None:
        """A gauge read at each scrape: ``sample()``, or ``await sample_async()`` (a database count)."""
        if (sample is None) == (sample_async is None):
            raise MetricError(f"{name}: give sample or sample_async")
        self._add(_Callback(name, documentation, labels, "gauge", sample, sample_async))

    def names(self) -> list[str]:
        return list(self._metrics)

    def label_names(self) -> dict[str, tuple[str, ...]]:
        """Every metric's label names (tests check the cloud's carry no device id)."""
        return {name: metric.label_names for name, metric in self._metrics.items()}

    async def render(self) -> bytes:
        """The text exposition format of every metric, callbacks sampled now."""
        lines: list[str] = []
        for metric in self._metrics.values():
            if isinstance(metric, _Callback):
                await metric.refresh()
            lines += metric.header()
            lines += metric.samples()
        return ("\n".join(lines) + "\n").encode()


def process_metrics(registry: Registry, process: str) -> None:
    """The standard process metrics: CPU seconds, resident memory, start time, and an info metric
    naming the process (``gridwire_process_info{process="ingest"} 1``)."""
    import os
    import resource
    import time

    started = time.time()
    info = registry.gauge("gridwire_process_info", "Which Gridwire process this is", ["process"], max_series=1)
    info.set(1, process)

    def cpu() -> float:
        times = os.times()
        return times.user + times.system

    def resident() -> float:
        try:
            with open("/proc/self/statm", "rb") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the peak instead
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    registry.counter_fn("process_cpu_seconds", "User and system CPU time of the OS process", cpu)
    registry.gauge_fn("process_resident_memory_bytes", "Resident memory of the OS process", resident)
    registry.gauge_fn("process_start_time_seconds", "When this process started (Unix time)", lambda: started)


__all__ = ["LATENCY_BUCKETS", "OTHER", "SIZE_BUCKETS", "Counter", "Gauge", "Histogram", "MetricError", "Registry",
           "process_metrics"]

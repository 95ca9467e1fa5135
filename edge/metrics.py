"""The concentrator's Prometheus metrics, all read at scrape time from counts it keeps anyway:
the outbox (depth, age of the oldest message), the forwarder, each meter's reads (labelled by
meter: a concentrator has tens of meters, not millions), P1 telegrams, backfill, firmware.

Served by :mod:`broker.metrics_http` (no third-party client: this process imports GPLv2-only
gurux-dlms, see docs/ARCHITECTURE.md) on the ``[metrics]`` port of the concentrator's config.
"""

from __future__ import annotations

from typing import Any

from broker.metrics import Registry, process_metrics

# Counts of P1Reader.stats, exposed as telegrams by result.
_P1_RESULTS = {"ok": "telegrams_ok", "crc": "crc_errors", "malformed": "malformed", "truncated": "truncated",
               "mapping": "mapping_errors", "oversize": "oversize"}


def concentrator_metrics(concentrator: Any) -> Registry:  # noqa: ANN401 - a Concentrator (which imports this)
    """A registry exposing a :class:`~edge.concentrator.Concentrator`'s state (sampled when scraped)."""
    registry = Registry()
    process_metrics(registry, "concentrator")
    c = concentrator
    session, forwarder, outbox = c.session, c.forwarder, c.outbox
    registry.gauge_fn("gridwire_edge_outbox_messages", "Messages in the durable outbox", lambda: len(outbox))
    registry.gauge_fn("gridwire_edge_outbox_oldest_age_seconds", "Age of the oldest message in the outbox",
                      outbox.oldest_age)
    registry.gauge_fn("gridwire_edge_outbox_limit", "Messages the outbox holds at most (outbox_limit)",
                      lambda: outbox.max_messages)
    registry.counter_fn("gridwire_edge_outbox_shed", "Messages given up at the outbox limit, by class "
                        "(live values go first, then load-profile readings, then events)",
                        lambda: {(keep.name.lower(),): n for keep, n in outbox.shed.items()}, labels=["class"])
    registry.counter_fn("gridwire_edge_outbox_refused", "Messages refused by a full outbox (all kept before them)",
                        lambda: c.refused)
    registry.gauge_fn("gridwire_edge_clock_synchronised", "1 once the clock was compared with the cloud's "
                      "since start (readings stamped before carry its free-running state)",
                      lambda: float(c.clock_state.synchronised))
    registry.gauge_fn("gridwire_edge_forwarder_in_flight", "Messages published, not yet confirmed by the cloud",
                      lambda: forwarder.in_flight)
    registry.counter_fn("gridwire_edge_forwarder_published", "Messages published (first sends)",
                        lambda: forwarder.published)
    registry.counter_fn("gridwire_edge_forwarder_republished", "Messages published again (unconfirmed in time)",
                        lambda: forwarder.republished)
    registry.counter_fn("gridwire_edge_forwarder_confirmed", "Messages the cloud confirmed stored",
                        lambda: forwarder.confirmed)
    registry.counter_fn("gridwire_edge_mqtt_connections", "Broker connections made", lambda: session.connections)
    registry.counter_fn("gridwire_edge_dead_letters", "Messages from the cloud given up on",
                        lambda: c.dead_letters)

    def reads() -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for meter, (protocol, ok, failed, _) in c.poller.totals().items():
            out[(meter, protocol, "success")] = ok
            out[(meter, protocol, "failure")] = failed
        return out

    registry.counter_fn("gridwire_edge_meter_reads", "Meter reads by meter and result", reads,
                        labels=["meter", "protocol", "result"])
    registry.counter_fn("gridwire_edge_meter_read_seconds", "Seconds spent in successful reads, by meter "
                        "(divide by the successes for the mean latency)",
                        lambda: {(m, p): s for m, (p, _, _, s) in c.poller.totals().items()},
                        labels=["meter", "protocol"])
    registry.gauge_fn("gridwire_edge_meter_healthy", "1 if the meter answers, 0 if it failed several times",
                      lambda: {(h.meter_id,): float(h.healthy) for h in [*c.p1_health.all(), *c.poller.health()]},
                      labels=["meter"])
    registry.counter_fn("gridwire_edge_p1_telegrams", "P1 telegrams by port and result", lambda: {
        (port, result): getattr(reader.stats, field)
        for port, reader in c.p1_readers.items() for result, field in _P1_RESULTS.items()},
        labels=["port", "result"])
    registry.counter_fn("gridwire_edge_backfill_runs", "Load-profile backfills run", lambda: c.backfiller.runs)
    registry.counter_fn("gridwire_edge_backfill_readings", "Readings recovered from load profiles",
                        lambda: c.backfiller.readings)
    downloader = c.firmware.downloader
    registry.counter_fn("gridwire_edge_firmware_downloads", "Firmware images downloaded and verified",
                        lambda: downloader.downloads)
    registry.counter_fn("gridwire_edge_firmware_chunks_requested", "Firmware chunks requested",
                        lambda: downloader.chunks_requested)
    registry.gauge_fn("gridwire_edge_firmware_download_ratio", "Share of an image on disk, per download running",
                      lambda: {(fid, ): p.received / max(1, p.count) for fid, p in downloader.active.items()},
                      labels=["firmware"])
    registry.counter_fn("gridwire_edge_firmware_transfers", "Images transferred to meters and activated",
                        lambda: c.firmware.transfers)
    return registry

"""Time sync on the wire, lean: the NTP-style exchange and meter clock drift reports (the contract's
pydantic models and the exchange's description: broker/schemas/timesync.py)."""

from __future__ import annotations

from broker.lean.base import Field, Lean, aware_datetime, boolean, number, text

# A time answer older than this is useless (its delay bound would be huge): let the broker drop it.
EXCHANGE_EXPIRY_SECONDS = 30


class TimeRequest(Lean):
    """Concentrator -> cloud: "my clock said ``t1`` when I sent this"."""

    fields = (Field("request_id", text(min_length=1, max_length=64), alias="requestId"), Field("t1", number()))


class TimeResponse(Lean):
    """Cloud -> concentrator: the request's ``t1``, and the reference clock at receive and transmit."""

    fields = (
        Field("request_id", text(min_length=1, max_length=64), alias="requestId"),
        Field("t1", number()),
        Field("t2", number()),
        Field("t3", number()),
    )


class DriftReport(Lean):
    """Concentrator -> cloud on ``concentrator/{cid}/time/drift``: one meter clock measurement."""

    fields = (
        Field("meter_id", text(min_length=1, max_length=64), alias="meterId"),
        Field("measured_at", aware_datetime, alias="measuredAt"),
        # Meter clock minus reference time: positive means the meter runs ahead.
        Field("drift_seconds", number(), alias="driftSeconds"),
        Field("corrected", boolean),
    )

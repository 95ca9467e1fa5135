"""Time sync on the wire: the NTP-style exchange and meter clock drift reports.

The concentrator sends a :class:`TimeRequest` on ``concentrator/{cid}/time/request``, the
cloud's time service answers with a :class:`TimeResponse` on ``.../time/response``, and the
concentrator reports each meter clock measurement as a :class:`DriftReport` on
``.../time/drift``. Timestamps are POSIX seconds as floats (microsecond resolution is plenty
for a broker round trip of milliseconds). The maths and the two ends are in
``edge/timesync.py`` and ``cloud/timesync/``.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from broker.lean.timesync import EXCHANGE_EXPIRY_SECONDS

__all__ = ["EXCHANGE_EXPIRY_SECONDS", "DriftReport", "TimeRequest", "TimeResponse"]


class TimeRequest(BaseModel):
    """Concentrator -> cloud: "my clock said ``t1`` when I sent this"."""

    model_config = ConfigDict(populate_by_name=True)

    request_id: str = Field(alias="requestId", min_length=1, max_length=64)
    t1: float


class TimeResponse(BaseModel):
    """Cloud -> concentrator: the request's ``t1``, and the reference clock at receive and transmit."""

    model_config = ConfigDict(populate_by_name=True)

    request_id: str = Field(alias="requestId", min_length=1, max_length=64)
    t1: float
    t2: float
    t3: float


class DriftReport(BaseModel):
    """Concentrator -> cloud on ``concentrator/{cid}/time/drift``: one meter clock measurement."""

    model_config = ConfigDict(populate_by_name=True)

    meter_id: str = Field(alias="meterId", min_length=1, max_length=64)
    measured_at: AwareDatetime = Field(alias="measuredAt")
    # Meter clock minus reference time: positive means the meter runs ahead.
    drift_seconds: float = Field(alias="driftSeconds")
    corrected: bool

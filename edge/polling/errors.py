"""The errors a meter adapter raises, so the poller can tell a retryable failure from a final one.

Protocol adapters (DLMS, Modbus, P1) subclass these; the poller only looks at ``transient``.
Each is also one of the kinds of :mod:`broker.errors`: a failed link is ``Unavailable``, a
refused association ``Forbidden``, a protocol-level refusal ``Invalid``.
"""

from __future__ import annotations

from broker.errors import Forbidden, GridwireError, Invalid, Unavailable


class MeterError(GridwireError):
    """A meter could not be read or commanded.

    ``transient`` says whether trying again soon may succeed (a timeout, a dropped link) or
    not (bad credentials, an address the meter does not have).
    """

    transient: bool = False

    def __init__(self, message: str, *, meter_id: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        self.meter_id = meter_id
        if transient is not None:
            self.transient = transient


class MeterCommunicationError(MeterError, Unavailable):
    """The link to the meter failed: no connection, timeout, garbled frame. Retried with backoff."""

    transient = True


class MeterAuthenticationError(MeterError, Forbidden):
    """The meter refused the association or credentials. Not retried until the next interval."""

    transient = False


class MeterProtocolError(MeterError, Invalid):
    """The meter answered with a protocol-level refusal (illegal address, object undefined)."""

    transient = False

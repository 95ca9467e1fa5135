"""The DLMS adapter's errors, as subclasses of the poller's MeterError family.

Messages name the meter, never a key or password.
"""

from __future__ import annotations

from edge.polling.errors import (
    MeterAuthenticationError,
    MeterCommunicationError,
    MeterError,
    MeterProtocolError,
)


class DlmsError(MeterError):
    """Any DLMS failure talking to one meter."""


class DlmsCommunicationError(DlmsError, MeterCommunicationError):
    """No connection, a timeout or a dropped link: transient, worth retrying."""

    transient = True


class DlmsAuthenticationError(DlmsError, MeterAuthenticationError):
    """The meter refused the association: wrong password, wrong keys or a replayed counter."""

    transient = False


class DlmsProtocolError(DlmsError, MeterProtocolError):
    """The meter answered with a refusal or an answer we cannot use (object undefined, denied)."""

    transient = False


class DlmsResultError(DlmsProtocolError):
    """The meter answered a request with a data-access or action result other than success.

    ``result`` is the DLMS result code (e.g. 2 temporary-failure, 3 read-write-denied,
    250 other-reason); image transfer tells "still verifying" from "failed" by it.
    """

    def __init__(self, message: str, *, result: int, meter_id: str | None = None) -> None:
        super().__init__(message, meter_id=meter_id)
        self.result = result

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

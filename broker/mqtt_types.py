"""What an MQTT session takes and gives: its errors, a will, TLS files, a received message,
handler types, and the MQTT 5 properties of a publish. Re-exported by :mod:`broker.session`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paho.mqtt.properties import Properties

from broker.errors import Unavailable
from broker.fast_properties import PublishProperties
from broker.topics import validate_publish_topic


class MqttError(Unavailable):
    """Base of the session's errors: the broker cannot take or give what was asked, for now."""


class ConnectError(MqttError):
    """The broker refused the connection (bad credentials, not authorised) or was unreachable."""


class NegativeAckError(MqttError):
    """The broker answered a publish or subscribe with a failure reason code."""

    def __init__(self, message: str, *, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    # bytes, or a memoryview for a session made with ``payload_views=True`` (no copy).
    payload: bytes | memoryview
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(slots=True)
class Message:
    """A received message. Acknowledged by the session after its handler returns."""

    topic: str
    # bytes, or a memoryview for a session made with ``payload_views=True`` (no copy).
    payload: bytes | memoryview
    qos: int
    retain: bool
    correlation_data: bytes | None = None
    response_topic: str | None = None
    message_expiry: int | None = None
    user_properties: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Message], Awaitable[None]]
# Said once by whoever took a message without a task (a NowHandler): None when it may be
# acknowledged, or the exception its handler would have raised (redelivered, then dead-lettered).
Settle = Callable[[Exception | None], None]
# Takes a message at once, inside the network callback, with no task per message (ingest at one
# reading per message); True once it took it and will call ``settle`` exactly once, False to
# leave it to the subscription's handler.
NowHandler = Callable[[Message, Settle], bool]
# Takes a message its handler failed on too often, and why; once it returns, the message is
# acknowledged. If it raises, the message stays unacknowledged and comes again.
DeadLetterSink = Callable[[Message, str], Awaitable[None]]


def publish_properties(*, correlation_data: bytes | None = None, response_topic: str | None = None,
                       message_expiry: int | None = None,
                       user_properties: dict[str, str] | None = None,
                       content_type: str | None = None) -> Properties | None:
    """MQTT 5 PUBLISH properties from keyword arguments (None when there are none)."""
    if not any((correlation_data, response_topic, message_expiry, user_properties, content_type)):
        return None
    return PublishProperties.of(
        correlation_data=correlation_data,
        response_topic=validate_publish_topic(response_topic) if response_topic is not None else None,
        message_expiry=max(1, int(message_expiry)) if message_expiry is not None else None,
        user_properties=list(user_properties.items()) if user_properties else None, content_type=content_type)


__all__ = ["ConnectError", "DeadLetterSink", "Handler", "Message", "MqttError", "NegativeAckError", "NowHandler",
           "Settle", "TlsSettings", "Will", "publish_properties"]

"""One asyncio MQTT 5 session for edge and cloud alike, on paho-mqtt driven by the event loop.

What it guarantees, and why each matters for "nothing lost":

- Durable session: clean start off and a session expiry, so the broker queues QoS 1 messages
  for us while we are away and redelivers the ones we had not acknowledged.
- ``publish`` returns only when the broker acknowledged the message (PUBACK for QoS 1), so a
  caller (the edge outbox) may delete its copy only then.
- Flow control: at most ``max_inflight`` unacknowledged QoS 1 publishes; further publishers
  wait instead of overrunning the broker's receive maximum.
- A received QoS 1 message is acknowledged only after its handler returned. A handler that
  raises leaves the message unacknowledged; the session then reconnects after a backoff so the
  broker redelivers it (MQTT 5 redelivers unacknowledged messages only on a new connection).
- Reconnect with capped, randomised exponential backoff; subscriptions restored when the
  broker did not keep the session.

paho runs without its own thread: its socket is registered with the event loop
(``add_reader``/``add_writer``) and ``loop_misc`` runs on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import paho_fixes
from broker.topics import validate_filter, validate_publish_topic

log = logging.getLogger(__name__)
paho_fixes.apply()

_ROUTE_CACHE = 10_000


class MqttError(Exception):
    """Base of the session's errors."""


class ConnectError(MqttError):
    """The broker refused the connection (bad credentials, not authorised) or was unreachable."""


class NegativeAckError(MqttError):
    """The broker answered a publish or subscribe with a failure reason code."""

    def __init__(self, message: str, *, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped, randomised exponential backoff ("full jitter" on the upper half)."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** max(attempt, 0))
        return random.uniform(ceiling / 2, ceiling)


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


def publish_properties(*, correlation_data: bytes | None = None, response_topic: str | None = None,
                       message_expiry: int | None = None,
                       user_properties: dict[str, str] | None = None,
                       content_type: str | None = None) -> Properties | None:
    """MQTT 5 PUBLISH properties from keyword arguments (None when there are none)."""
    if not any((correlation_data, response_topic, message_expiry, user_properties, content_type)):
        return None
    props = Properties(PacketTypes.PUBLISH)
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    if response_topic is not None:
        props.ResponseTopic = validate_publish_topic(response_topic)
    if message_expiry is not None:
        props.MessageExpiryInterval = max(1, int(message_expiry))
    if user_properties:
        props.UserProperty = list(user_properties.items())
    if content_type is not None:
        props.ContentType = content_type
    return props


class MqttSession:
    """An MQTT 5 client session; use as ``async with MqttSession(...) as session``."""

    def __init__(self, *, client_id: str, host: str, port: int, username: str | None = None,
                 password: str | None = None, session_expiry: int = 7 * 24 * 3600,
                 clean_start: bool = False, keepalive: int = 30, receive_maximum: int = 100,
                 max_inflight: int = 100, will: Will | Callable[[], Will] | None = None,
                 tls: TlsSettings | None = None,
                 backoff: Backoff = Backoff(), connect_timeout: float = 10.0, payload_views: bool = False) -> None:
        self.client_id = client_id
        # True: handlers get each payload as a read-only view of the received packet, not a
        # copy of it (ingest: a copy of every 90 KiB batch cost it a tenth of its CPU).
        self._payload_views = payload_views
        self._host, self._port, self._keepalive = host, port, keepalive
        self._session_expiry, self._clean_start = session_expiry, clean_start
        self._receive_maximum = receive_maximum
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv5, manual_ack=True)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file,
                                 tls_version=ssl.PROTOCOL_TLS_CLIENT)
        # A callable will is asked again before every connection attempt, so a will can say
        # which connection it belongs to (the concentrator numbers its sessions).
        self._will = will
        self._client.connect_timeout = connect_timeout
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._inflight = asyncio.Semaphore(max_inflight)
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._subscriptions: dict[str, tuple[Handler, int]] = {}
        self._routes: dict[str, Handler | None] = {}  # topic -> handler, see _handler_for
        self._pending_subs: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] | None = None
        self.connected = asyncio.Event()
        self._closing = False
        self.connections = 0
        self._install_callbacks()

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> MqttSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect once; raise ConnectError if refused. Later drops reconnect by themselves."""
        self._loop = asyncio.get_running_loop()
        self._misc_task = asyncio.create_task(self._misc_loop(), name=f"mqtt-misc-{self.client_id}")
        await self._connect_once()

    async def drain(self, *, timeout: float) -> None:
        """Let the handlers already running finish (and their messages be acknowledged), for at
        most ``timeout`` seconds; for a graceful stop before :meth:`close`."""
        running = [task for task in self._handler_tasks if not task.done()]
        if running:
            await asyncio.wait(running, timeout=timeout)

    async def close(self) -> None:
        """Disconnect cleanly (no will is sent) and stop background tasks."""
        self._closing = True
        for task in (self._reconnect_task, self._misc_task):
            if task is not None:
                task.cancel()
        for task in list(self._handler_tasks):
            task.cancel()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)
        if self.connected.is_set():
            self._client.disconnect()
            self._client.loop_write()
        self._drop_socket()
        self.connected.clear()
        for fut in list(self._pending.values()) + list(self._pending_subs.values()):
            if not fut.done():
                fut.set_exception(MqttError("session closed"))
        for task in (self._reconnect_task, self._misc_task):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

    async def _connect_once(self) -> None:
        assert self._loop is not None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        self._connack = self._loop.create_future()
        will = self._will() if callable(self._will) else self._will
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        try:
            # paho's connect is a blocking TCP connect: on loopback and a LAN it is immediate.
            self._client.connect(self._host, self._port, self._keepalive, clean_start=self._clean_start,
                                 properties=props)
        except (OSError, socket.timeout) as exc:
            raise ConnectError(f"cannot reach broker at {self._host}:{self._port}: {exc}") from exc
        try:
            await asyncio.wait_for(self._connack, self._connect_timeout)
        except TimeoutError as exc:
            self._drop_socket()
            raise ConnectError(f"no CONNACK from {self._host}:{self._port}") from exc

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                      properties: Properties | None = None) -> None:
        """Publish and return once the broker has it (PUBACK for QoS 1; written for QoS 0)."""
        validate_publish_topic(topic)
        assert self._loop is not None, "session not connected"
        if qos == 0:
            await self.connected.wait()
            info = self._client.publish(topic, payload, qos=0, retain=retain, properties=properties)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
            return
        async with self._inflight:
            await self.connected.wait()
            fut: asyncio.Future[None] = self._loop.create_future()
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
            # paho may have handled the PUBACK already if the socket raced ahead; keep both paths.
            if info.is_published():
                return
            self._pending[info.mid] = fut
            # A message in flight when the connection drops stays in paho's queue and is sent
            # again after the reconnect, so this future simply completes later.
            await fut

    # --- subscribing --------------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Subscribe and route matching messages to ``handler``; kept across reconnects."""
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = (handler, qos)
        self._routes.clear()
        await self._send_subscribe(topic_filter, qos)

    def route(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Register a subscription before :meth:`connect`; it is subscribed on connection.

        A durable session's broker redelivers unacknowledged messages right after CONNACK,
        before a ``subscribe`` made after ``connect`` could register its handler; routes set
        up here are in place by then, so those messages are handled, not dropped.
        """
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = (handler, qos)
        self._routes.clear()

    async def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        assert self._loop is not None
        await self.connected.wait()
        options = paho.SubscribeOptions(qos=qos)
        result, mid = self._client.subscribe(topic_filter, options=options)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"subscribe to {topic_filter} failed: {paho.error_string(result)}")
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._pending_subs[mid] = fut
        codes = await fut
        if any(code.is_failure for code in codes):
            raise NegativeAckError(f"broker refused subscription {topic_filter}: {codes[0]}",
                                   reason_code=codes[0].value)

    def _handler_for(self, topic: str) -> Handler | None:
        # Matching a topic against every filter costs more than the rest of dispatching a
        # message (paho builds a matcher per call), and topics repeat: remember (bounded).
        if topic in self._routes:
            return self._routes[topic]
        found = None
        for topic_filter, (handler, _qos) in self._subscriptions.items():
            plain = topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter
            if paho.topic_matches_sub(plain, topic):
                found = handler
                break
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = found
        return found

    async def _dispatch(self, raw: paho.MQTTMessage) -> None:
        props = getattr(raw, "properties", None)
        message = Message(
            topic=raw.topic, payload=raw.payload if self._payload_views else bytes(raw.payload), qos=raw.qos,
            retain=bool(raw.retain),
            correlation_data=getattr(props, "CorrelationData", None),
            response_topic=getattr(props, "ResponseTopic", None),
            message_expiry=getattr(props, "MessageExpiryInterval", None),
            user_properties=dict(getattr(props, "UserProperty", []) or []),
        )
        handler = self._handler_for(message.topic)
        if handler is None:
            log.warning("%s: no handler for %s; acknowledging and dropping", self.client_id, message.topic)
            self._ack(raw)
            return
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acknowledged: reconnect so the broker delivers it again.
            log.exception("%s: handler failed for %s; message left unacknowledged", self.client_id,
                          message.topic)
            self._force_reconnect()
            return
        self._ack(raw)

    def _ack(self, raw: paho.MQTTMessage) -> None:
        if raw.qos > 0 and self.connected.is_set():
            self._client.ack(raw.mid, raw.qos)

    # --- paho callbacks (run inside loop_read / loop_write on the event loop) -----------------

    def _install_callbacks(self) -> None:
        c = self._client
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message

    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        _no_delay(sock)
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_register_write(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _on_connect(self, _client: paho.Client, _userdata: Any, flags: Any, reason_code: ReasonCode,
                    _properties: Any) -> None:
        if reason_code.is_failure:
            error = ConnectError(f"broker refused connection for {self.client_id}: {reason_code}")
            if self._connack is not None and not self._connack.done():
                self._connack.set_exception(error)
            else:
                log.error("%s", error)
            return
        self.connections += 1
        self.connected.set()
        log.info("%s connected (session present: %s)", self.client_id, flags.session_present)
        # Subscribe again even when the broker says it kept the session: mosquitto 2.0 restores
        # a persisted session after a restart without its shared subscriptions, and
        # subscribing again to a filter we hold is harmless.
        for topic_filter, (_handler, qos) in self._subscriptions.items():
            asyncio.ensure_future(self._resubscribe(topic_filter, qos))
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)

    async def _resubscribe(self, topic_filter: str, qos: int) -> None:
        try:
            await self._send_subscribe(topic_filter, qos)
        except MqttError:
            log.exception("%s: could not restore subscription %s", self.client_id, topic_filter)

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode,
                       _properties: Any) -> None:
        self.connected.clear()
        if self._closing:
            return
        log.warning("%s disconnected: %s; reconnecting", self.client_id, reason_code)
        self._schedule_reconnect()

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason_code: ReasonCode,
                    _properties: Any) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if reason_code.is_failure:
            fut.set_exception(NegativeAckError(f"broker refused publish: {reason_code}",
                                               reason_code=reason_code.value))
        else:
            fut.set_result(None)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, mid: int, codes: list[ReasonCode],
                      _properties: Any) -> None:
        fut = self._pending_subs.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(codes)

    def _on_message(self, _client: paho.Client, _userdata: Any, raw: paho.MQTTMessage) -> None:
        task = asyncio.ensure_future(self._dispatch(raw))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    # --- background ---------------------------------------------------------------------------

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            rc = self._client.loop_misc()
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN and not self._closing and self.connected.is_set():
                self.connected.clear()
                self._schedule_reconnect()

    def _force_reconnect(self) -> None:
        if self._closing or not self.connected.is_set():
            return
        self.connected.clear()
        self._drop_socket()
        self._schedule_reconnect()

    def _drop_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        # paho's internal close, so its state says "not connected" and in-flight messages stay queued.
        self._client._sock_close()  # noqa: SLF001 - paho has no public "drop socket" call

    def _schedule_reconnect(self) -> None:
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while not self._closing and not self.connected.is_set():
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            try:
                await self._connect_once()
            except ConnectError as exc:
                log.info("%s: reconnect attempt %d failed: %s", self.client_id, attempt, exc)
            except Exception:
                # The loop must outlive any surprise from the client library, or we stay offline.
                log.exception("%s: unexpected error on reconnect attempt %d", self.client_id, attempt)


def _no_delay(sock: Any) -> None:
    """Turn off Nagle's algorithm: paho writes a packet per call, and with Nagle a small
    request behind an unacknowledged one waits for the peer's delayed ACK (40 ms on Linux),
    which made a request/response round trip cost ~40 ms (measured by bench/firmware.py)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

"""One asyncio MQTT 5 session for edge and cloud alike, on paho-mqtt driven by the event loop.

What it guarantees, and why each matters for "nothing lost":

- Durable session: clean start off and a session expiry, so the broker queues QoS 1 messages
  for us while we are away and redelivers the ones we had not acknowledged.
- ``publish`` returns only when the broker acknowledged the message (PUBACK for QoS 1), so a
  caller (the edge outbox) may delete its copy only then.
- Flow control: at most ``max_inflight`` unacknowledged QoS 1 publishes; further publishers
  wait instead of overrunning the broker's receive maximum.
- A received QoS 1 message is acknowledged only after its handler returned (or, for a
  subscription with a ``now`` handler that took it, once that handler settled it); the
  PUBACKs of messages settled in the same turn of the event loop go out in one write. A handler that
  raises leaves the message unacknowledged; the session then reconnects after a backoff so the
  broker redelivers it (MQTT 5 redelivers unacknowledged messages only on a new connection).
- Redeliveries are capped: a message its handler failed on ``max_deliveries`` times goes to
  the owner's ``dead_letter`` sink and is then acknowledged, so one poisonous message cannot
  keep the session reconnecting for ever. The backoff before each redelivery grows with the
  message's failures. A session without a sink keeps redelivering (nothing is dropped unseen).
  A failure the owner's ``transient`` says is a collaborator's (by default ``Unavailable`` or
  an ``OSError``: the database or InfluxDB down) does not count: such a message waits for the
  collaborator however long it takes, and is never dead-lettered for it.
- Reconnect with capped, randomised exponential backoff; subscriptions restored when the
  broker did not keep the session.
- :meth:`MqttSession.start` connects in the background, the same way, for an owner that must
  work without the broker (a concentrator booting with no network); ``connect`` waits.
- Connecting never blocks the event loop: the TCP connect and TLS handshake run in a worker
  thread (:mod:`broker.paho_client`), so over a slow link a concentrator's meter readers keep
  their schedule while the session connects.
- Every task it starts is named (``mqtt-...:<client id>``) and ended by :meth:`close`.

paho runs without its own thread: its socket is registered with the event loop
(``add_reader``/``add_writer``) and ``loop_misc`` runs on a timer. Connecting, the connection's
callbacks and reconnecting are in :mod:`broker.session_connection`; subscribing, routing,
handling, acknowledging and publishing are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import logs, paho_fixes
from broker.backoff import Backoff
from broker.errors import Invalid
from broker.mqtt_types import (
    ConnectError,
    DeadLetterSink,
    Handler,
    Message,
    MqttError,
    NegativeAckError,
    NowHandler,
    Settle,
    TlsSettings,
    Will,
    publish_properties,
)
from broker.paho_client import OffLoopClient, Received
from broker.redelivery import Redeliveries, is_transient
from broker.session_connection import SessionConnection
from broker.topics import matches, validate_filter, validate_publish_topic
from broker.window import Window

log = logging.getLogger(__name__)
paho_fixes.apply()

_ROUTE_CACHE = 10_000
# Seconds a message no handler takes yet is held for one (see MqttSession._hold).
UNROUTED_GRACE = 30.0
# Seconds close() waits for the broker to close the connection after our DISCONNECT (see _leave).
CLOSE_WAIT = 2.0
_LOGGED_PAYLOAD = 200

class MqttSession(SessionConnection):
    """An MQTT 5 client session; use as ``async with MqttSession(...) as session``."""

    def __init__(self, *, client_id: str, host: str, port: int, username: str | None = None,
                 password: str | None = None, session_expiry: int = 7 * 24 * 3600,
                 clean_start: bool = False, keepalive: int = 30, receive_maximum: int = 100,
                 max_inflight: int = 100, will: Will | Callable[[], Will] | None = None,
                 tls: TlsSettings | None = None,
                 backoff: Backoff = Backoff(), connect_timeout: float = 10.0, payload_views: bool = False,
                 max_deliveries: int = 5, dead_letter: DeadLetterSink | None = None,
                 transient: Callable[[Exception], bool] = is_transient) -> None:
        if max_deliveries < 1:
            raise Invalid("max_deliveries must be >= 1")
        self.client_id = client_id
        # True: handlers get each payload as a read-only view of the received packet, not a
        # copy of it (ingest: a copy of every 90 KiB batch cost it a tenth of its CPU).
        self._payload_views = payload_views
        self._host, self._port, self._keepalive = host, port, keepalive
        self._session_expiry, self._clean_start = session_expiry, clean_start
        self._receive_maximum = receive_maximum
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._max_deliveries = max_deliveries
        self._dead_letter = dead_letter
        self._transient = transient
        self._client = OffLoopClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
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
        # The window below keeps at most ``max_inflight`` QoS 1 messages in paho's hands (a slot
        # is held until the broker's PUBACK, even when the publisher was cancelled meanwhile), so
        # paho is left unlimited: its own limit rescans every message in flight on each PUBACK.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._inflight = Window(max_inflight)
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._subscriptions: dict[str, tuple[Handler, int]] = {}
        self._routes: dict[str, Handler | None] = {}  # topic -> handler, see _handler_for
        self._pending_subs: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._unrouted: list[tuple[int, Received]] = []  # received before their handler was named (see _hold)
        self._unrouted_timer: asyncio.TimerHandle | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._now: dict[Handler, NowHandler] = {}  # a subscription's handler -> its now handler
        self._taken = 0  # messages a now handler took and has not settled yet
        self._acks: list[int] = []  # packet ids to acknowledge at the end of this loop turn (_ack_soon)
        self._acks_connection = 0  # the connection they came on
        self._all_settled: asyncio.Future[None] | None = None  # for drain()
        self._tasks: set[asyncio.Task[None]] = set()  # everything else it runs in the background
        self._redeliveries = Redeliveries()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] | None = None
        self.connected = asyncio.Event()
        self._reconnected = asyncio.Event()
        self._closing = False
        self._left: asyncio.Future[None] | None = None  # the broker closed the connection close() ended
        self.connections = 0
        # When the last connection was lost (time.time()); None before the first one is made.
        self.lost_at: float | None = None
        self.dead_lettered = 0
        self._install_callbacks()

    @property
    def handling(self) -> int:
        """Received messages whose handler is running (not yet acknowledged)."""
        return len(self._handler_tasks) + self._taken

    def set_will(self, will: Will | Callable[[], Will] | None) -> None:
        """The will of the next connection attempts (a callable is asked before each one)."""
        self._will = will

    def set_dead_letter(self, sink: DeadLetterSink | None) -> None:
        """Where messages go that their handler failed on ``max_deliveries`` times."""
        self._dead_letter = sink

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> MqttSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def drain(self, *, timeout: float) -> None:
        """Let the handlers already running finish (and their messages be acknowledged), for at
        most ``timeout`` seconds; for a graceful stop before :meth:`close`."""
        waits: list[asyncio.Future[Any]] = [task for task in self._handler_tasks if not task.done()]
        if self._taken:
            assert self._loop is not None
            if self._all_settled is None or self._all_settled.done():
                self._all_settled = self._loop.create_future()
            waits.append(self._all_settled)
        if waits:
            await asyncio.wait(waits, timeout=timeout)

    async def close(self) -> None:
        """Disconnect cleanly (no will is sent) and stop every task the session started."""
        self._closing = True
        self._drop_unrouted(acknowledge=False)
        background = list(self._tasks)
        for task in background + list(self._handler_tasks):
            task.cancel()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)
        try:
            if self.connected.is_set():
                await self._leave()
        finally:
            self._drop_socket()
        self.connected.clear()
        for fut in list(self._pending.values()) + list(self._pending_subs.values()):
            if not fut.done():
                fut.set_exception(MqttError("session closed"))
        await asyncio.gather(*background, return_exceptions=True)

    async def _leave(self) -> None:
        """Acknowledge the settled messages (stored, so acknowledged before leaving) and
        disconnect, then wait, at most CLOSE_WAIT seconds, for the broker to close its side.

        The broker has read the PUBACKs once it has read the DISCONNECT behind them, and it
        closes the connection then. Closing our side right after writing them was not enough:
        Mosquitto 2.0 reads a connection one packet per turn of its loop, and a client taking
        the session over (this session resumed at once) could be served before the last of
        them; they were dropped with the old connection and the broker delivered those
        messages again."""
        mids, self._acks = self._acks, []
        if self._acks_connection != self.connections:
            mids = []  # they came on a connection since lost: the broker sends them again
        assert self._loop is not None
        self._left = left = self._loop.create_future()
        self._lost()  # nothing is acknowledged after the DISCONNECT
        self._client.finish(mids)
        self._client.loop_write()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(left), CLOSE_WAIT)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start a named background task that :meth:`close` cancels and awaits."""
        assert self._loop is not None
        task = self._loop.create_task(coro, name=f"{what}:{self.client_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        await self._inflight.acquire()
        try:
            await self.connected.wait()
            fut: asyncio.Future[None] = self._loop.create_future()
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
            # paho may have handled the PUBACK already if the socket raced ahead; keep both paths.
            if info.is_published():
                self._inflight.release()
                return
            self._pending[info.mid] = fut
        except BaseException:
            self._inflight.release()
            raise
        # The slot is the message's until the broker answers it (or the session closes), whether
        # or not this caller still waits. A message in flight when the connection drops stays in
        # paho's queue and is sent again after the reconnect, so this future simply completes later.
        fut.add_done_callback(self._answered)
        await asyncio.shield(fut)

    def _answered(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled():
            fut.exception()  # retrieved: a caller that stopped waiting is not told twice
        self._inflight.release()

    # --- subscribing --------------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1,
                        now: NowHandler | None = None) -> None:
        """Subscribe and route matching messages to ``handler``; kept across reconnects.

        ``now`` is offered each message first, in the network callback: a message it takes
        costs no task; one it declines goes to ``handler`` as usual."""
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = (handler, qos)
        if now is not None:
            self._now[handler] = now
        self._routes.clear()
        self._route_held()
        await self._send_subscribe(topic_filter, qos)

    def route(self, topic_filter: str, handler: Handler, *, qos: int = 1, now: NowHandler | None = None) -> None:
        """Register a subscription before :meth:`connect`; it is subscribed on connection
        (``now`` as for :meth:`subscribe`).

        A durable session's broker redelivers unacknowledged messages right after CONNACK,
        before a ``subscribe`` made after ``connect`` could register its handler; routes set
        up here are in place by then, so those messages are handled, not dropped.
        """
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = (handler, qos)
        if now is not None:
            self._now[handler] = now
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
        # Matching a topic against every filter once cost more than the rest of dispatching a
        # message (paho builds a matcher per call; broker.topics.matches does not), and topics
        # repeat: remember (bounded).
        if topic in self._routes:
            return self._routes[topic]
        found = None
        for topic_filter, (handler, _qos) in self._subscriptions.items():
            plain = topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter
            if matches(plain, topic):
                found = handler
                break
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = found
        return found

    def _message(self, raw: Received) -> Message:
        props = raw.properties
        if props is None:
            user = raw.user_property
            return Message(topic=raw.topic, payload=raw.payload if self._payload_views else bytes(raw.payload),
                           qos=raw.qos, retain=bool(raw.retain), user_properties={user[0]: user[1]} if user else {})
        return Message(
            topic=raw.topic, payload=raw.payload if self._payload_views else bytes(raw.payload), qos=raw.qos,
            retain=bool(raw.retain),
            correlation_data=getattr(props, "CorrelationData", None),
            response_topic=getattr(props, "ResponseTopic", None),
            message_expiry=getattr(props, "MessageExpiryInterval", None),
            user_properties=dict(getattr(props, "UserProperty", []) or []),
        )

    def _take_now(self, raw: Received) -> Message | None:
        """Offer ``raw`` to its subscription's now handler; None once taken (or settled), else
        the message, for the handler's task."""
        handler = self._handler_for(raw.topic)
        now = self._now.get(handler) if handler is not None else None
        message = self._message(raw)
        if now is None:
            return message
        counted = self._redeliveries.active
        if counted and self._redeliveries.take_settled(message):
            self._ack(raw)  # dead-lettered already; its acknowledgement was lost with the connection
            return None
        try:
            taken = now(message, functools.partial(self._settle, raw, message, counted, self.connections))
        except Exception:  # noqa: BLE001 - the handler's task meets the same problem and handles it
            log.debug("%s: now handler failed on %s; handing it to the handler", self.client_id, raw.topic,
                      exc_info=True)
            return message
        if not taken:
            return message
        self._taken += 1
        return None

    def _settle(self, raw: Received, message: Message, counted: bool, connection: int,
                failure: Exception | None) -> None:
        """A now handler is done with ``message``: acknowledge it, or fail it as a handler would."""
        self._taken -= 1
        if self._taken == 0 and self._all_settled is not None and not self._all_settled.done():
            self._all_settled.set_result(None)
        if connection != self.connections:
            return  # came on a connection since lost: the broker sends it again (its id is another's now)
        if failure is None:
            if counted:
                self._redeliveries.succeeded(message)
            self._ack_soon(raw)
        elif not self._closing:
            self._spawn(self._handler_failed(raw, message, failure), f"mqtt-failed {raw.mid}")

    async def _dispatch(self, raw: Received, message: Message | None = None) -> None:
        if message is None:
            message = self._message(raw)
        # Log lines written while the handler runs name this message's ids (a JSON log's fields).
        logs.handling(message)
        handler = self._handler_for(message.topic)
        if handler is None:
            self._hold(raw, message)
            return
        # Only a session that has seen a handler fail pays for identifying messages.
        counted = self._redeliveries.active
        if counted and self._redeliveries.take_settled(message):
            self._ack(raw)  # dead-lettered already; its acknowledgement was lost with the connection
            return
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure: redeliver, then dead-letter
            await self._handler_failed(raw, message, exc)
            return
        if counted:
            self._redeliveries.succeeded(message)
        self._ack_soon(raw)

    def _hold(self, raw: Received, message: Message) -> None:
        """A message no handler takes yet. A durable session's broker sends what the last
        connection left unacknowledged right after CONNACK, before the owner's ``subscribe``
        calls have named their handlers (a restarted core lost its share of a bulk request
        here): keep it, unacknowledged, until a ``subscribe`` takes it or UNROUTED_GRACE passes."""
        assert self._loop is not None
        self._unrouted.append((self.connections, raw))
        if self._unrouted_timer is None:
            self._unrouted_timer = self._loop.call_later(UNROUTED_GRACE, self._drop_unrouted)
        log.info("%s: no handler yet for %s; holding it for %.0f s", self.client_id, message.topic, UNROUTED_GRACE)

    def _route_held(self) -> None:
        """Dispatch the held messages a new subscription takes."""
        held, self._unrouted = self._unrouted, []
        for connection, raw in held:
            if connection != self.connections:
                continue  # came on a connection since lost: the broker sends it again
            if self._handler_for(raw.topic) is None:
                self._unrouted.append((connection, raw))
            else:
                self._on_message(self._client, None, raw)

    def _drop_unrouted(self, *, acknowledge: bool = True) -> None:
        held, self._unrouted = self._unrouted, []
        if self._unrouted_timer is not None:
            self._unrouted_timer.cancel()
            self._unrouted_timer = None
        for connection, raw in held:
            if acknowledge and connection == self.connections:
                log.warning("%s: no handler for %s; acknowledging and dropping", self.client_id, raw.topic)
                self._ack(raw)

    async def _handler_failed(self, raw: Received, message: Message, exc: Exception) -> None:
        waits = self._transient(exc)
        failures = self._redeliveries.failed(message, transient=waits)
        if self._dead_letter is not None and not waits and failures.counted >= self._max_deliveries:
            reason = f"handler failed on {failures.counted} deliveries; last: {type(exc).__name__}: {exc}"
            log.error("%s: dead-lettering %s: %s (payload %r)", self.client_id, message.topic, reason,
                      bytes(message.payload[:_LOGGED_PAYLOAD]))
            try:
                await self._dead_letter(message, reason)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the sink is down: keep the message, try again later
                log.exception("%s: could not dead-letter %s; it stays unacknowledged", self.client_id,
                              message.topic)
            else:
                self.dead_lettered += 1
                self._redeliveries.settled(message, acknowledged=self._ack(raw))
                return
        # Not acknowledged: reconnect so the broker delivers it again, later each time.
        if waits:
            counting = ", not counted: it waits for a collaborator"
        elif self._dead_letter is not None:
            counting = f", {failures.counted} of {self._max_deliveries} counted"
        else:
            counting = ", no dead-letter sink"
        log.error("%s: handler failed for %s (delivery %d%s); message left unacknowledged", self.client_id,
                  message.topic, failures.total, counting, exc_info=exc)
        self._force_reconnect(attempt=failures.total - 1)

    def _ack_soon(self, raw: Received) -> None:
        """Acknowledge ``raw`` with every other message settled in this turn of the loop: their
        PUBACKs go out in one write (a batch of 20,000 readings settles 20,000 messages at once)."""
        if raw.qos == 0 or not self.connected.is_set():
            return
        if not self._acks:
            assert self._loop is not None
            self._acks_connection = self.connections
            self._loop.call_soon(self._send_acks)
        elif self._acks_connection != self.connections:
            self._acks.clear()  # those came on a connection since lost: the broker sends them again
            self._acks_connection = self.connections
        self._acks.append(raw.mid)

    def _send_acks(self) -> None:
        mids, self._acks = self._acks, []
        if mids and self._acks_connection == self.connections and self.connected.is_set():
            self._client.ack_many(mids)

    def _ack(self, raw: Received) -> bool:
        """Acknowledge a received message; False if the connection it came on is gone."""
        if raw.qos == 0:
            return True
        if not self.connected.is_set():
            return False
        self._client.ack(raw.mid, raw.qos)
        return True

    # --- paho callbacks (run inside loop_read / loop_write on the event loop) -----------------

    async def _resubscribe(self, topic_filter: str, qos: int) -> None:
        try:
            await self._send_subscribe(topic_filter, qos)
        except MqttError:
            log.exception("%s: could not restore subscription %s", self.client_id, topic_filter)

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

    def _on_message(self, _client: paho.Client, _userdata: Any, raw: Received) -> None:
        assert self._loop is not None
        if self._closing:
            return  # not handled, not acknowledged: the broker sends it again to the next session
        message = None
        if self._now:
            message = self._take_now(raw)
            if message is None:
                return
        task = self._loop.create_task(self._dispatch(raw, message), name=f"mqtt-handle {raw.mid}:{self.client_id}")
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    # --- background ---------------------------------------------------------------------------

__all__ = ["Backoff", "ConnectError", "DeadLetterSink", "Handler", "Message", "MqttError", "MqttSession",
           "NegativeAckError", "TlsSettings", "Will", "publish_properties"]

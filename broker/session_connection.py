"""The connection side of :class:`broker.session.MqttSession`: connecting, the paho callbacks of
the connection's life, and reconnecting with backoff.

:class:`SessionConnection` is a part of ``MqttSession``, split out by responsibility; the state
it works on (the paho client, the backoff, the ``connected`` event, the counters) is made in
``MqttSession.__init__``, and the receiving and publishing side stays in :mod:`broker.session`.
What the session guarantees is described there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.mqtt_types import ConnectError

log = logging.getLogger("broker.session")


class SessionConnection:
    """Connect, stay connected and reconnect: mixed into :class:`broker.session.MqttSession`."""

    async def connect(self) -> None:
        """Connect once; raise ConnectError if refused. Later drops reconnect by themselves."""
        self._drive()
        await self._connect_once()

    def start(self) -> None:
        """Connect in the background and return at once (a concentrator booting without network):
        the first attempt now, each later one after the session's backoff, randomised so a fleet
        that lost power together does not call back in lockstep. Publishes and subscriptions wait
        for the connection; ``connected`` and :meth:`wait_connection` tell when it is made."""
        self._drive()
        self._schedule_reconnect(attempt=-1)

    def _drive(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.drive_with(self._loop)
        self._misc_task = self._spawn(self._misc_loop(), "mqtt-misc")

    async def wait_connection(self, after: int) -> int:
        """Wait until this session has made more than ``after`` connections; return how many."""
        while self.connections <= after:
            await self._reconnected.wait()
        return self.connections

    async def _connect_once(self) -> None:
        assert self._loop is not None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        will = self._will() if callable(self._will) else self._will
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.prepare(self._host, self._port, self._keepalive, clean_start=self._clean_start,
                             properties=props)
        sock = await self._open_socket()
        self._connack = self._loop.create_future()
        try:
            self._client.connect_on(sock)
        except OSError as exc:
            raise ConnectError(f"cannot reach broker at {self._host}:{self._port}: {exc}") from exc
        try:
            await asyncio.wait_for(self._connack, self._connect_timeout)
        except TimeoutError as exc:
            self._drop_socket()
            raise ConnectError(f"no CONNACK from {self._host}:{self._port}") from exc

    async def _open_socket(self) -> Any:
        """The TCP connection (and TLS handshake), made in a worker thread: over a slow link
        they take seconds, and on the loop every other coroutine would wait that long."""
        assert self._loop is not None
        opening = self._loop.run_in_executor(None, self._client.open_socket)
        try:
            # Shielded, so a cancelled connect (close() meanwhile) still gets the socket to close.
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        except (OSError, ValueError) as exc:  # ssl.CertificateError is a ValueError
            raise ConnectError(f"cannot reach broker at {self._host}:{self._port}: {exc}") from exc

    # --- publishing ---------------------------------------------------------------------------

    def _install_callbacks(self) -> None:
        c = self._client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message

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
        # Wake whoever waits for this connection, and start a fresh event for the next one.
        self._reconnected.set()
        self._reconnected = asyncio.Event()
        log.info("%s connected (session present: %s)", self.client_id, flags.session_present)
        # Subscribe again even when the broker says it kept the session: mosquitto 2.0 restores
        # a persisted session after a restart without its shared subscriptions, and
        # subscribing again to a filter we hold is harmless.
        for topic_filter, (_handler, qos) in self._subscriptions.items():
            self._spawn(self._resubscribe(topic_filter, qos), f"mqtt-resubscribe {topic_filter}")
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode,
                       _properties: Any) -> None:
        self._lost()
        self._drop_unrouted(acknowledge=False)  # the broker sends them again on the next connection
        if self._closing:
            if self._left is not None and not self._left.done():
                self._left.set_result(None)  # close() waits for this
            return
        log.warning("%s disconnected: %s; reconnecting", self.client_id, reason_code)
        self._schedule_reconnect()

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            rc = self._client.loop_misc()
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN and not self._closing and self.connected.is_set():
                self._lost()
                self._schedule_reconnect()

    def _force_reconnect(self, *, attempt: int = 0) -> None:
        if self._closing or not self.connected.is_set():
            return
        self._lost()
        self._drop_socket()
        self._schedule_reconnect(attempt=attempt)

    def _drop_socket(self) -> None:
        self._client.drop_socket()

    def _lost(self) -> None:
        """The connection is gone: note when (the first loss counts if reported twice)."""
        if self.connected.is_set():
            self.lost_at = time.time()
        self.connected.clear()

    def _schedule_reconnect(self, *, attempt: int = 0) -> None:
        if self._closing:
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = self._spawn(self._reconnect_loop(attempt), "mqtt-reconnect")

    async def _reconnect_loop(self, attempt: int) -> None:
        """Connect again, waiting longer after each failure. ``attempt`` > 0 starts the waits
        further up (a message that failed its handler n times waits as after n failures); -1
        makes the first attempt at once."""
        tries = 0
        while not self._closing and not self.connected.is_set():
            if attempt >= 0:  # -1: the first attempt of a background start, made at once
                await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            tries += 1
            try:
                await self._connect_once()
            except ConnectError as exc:
                log.info("%s: reconnect attempt %d failed: %s", self.client_id, tries, exc)
            except Exception:  # noqa: BLE001
                # The loop must outlive any surprise from the client library, or we stay offline.
                log.exception("%s: unexpected error on reconnect attempt %d", self.client_id, tries)


def _close_opened(opening: asyncio.Future[Any]) -> None:
    """Close a socket whose connect was abandoned while it was being opened."""
    if not opening.cancelled() and opening.exception() is None:
        with contextlib.suppress(OSError):
            opening.result().close()

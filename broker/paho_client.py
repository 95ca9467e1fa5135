"""paho's MQTT client driven by the event loop, with its one blocking step split off so that
step can run in a worker thread.

paho runs without its own thread: :meth:`OffLoopClient.drive_with` registers its socket with
the loop (``add_reader``/``add_writer`` call paho's ``loop_read``/``loop_write``).

``paho.Client.connect`` opens the TCP connection and does the TLS handshake in the calling
thread, blocking, for up to ``connect_timeout`` seconds. On the event loop that stalls every
other coroutine of the process (a concentrator's meter readers) for the whole handshake of
each attempt over a slow WAN. :class:`OffLoopClient` opens the socket in
:meth:`~OffLoopClient.open_socket`, which reads only the client's settings and so may run in
a worker thread, and then hands the open socket to paho on the loop
(:meth:`~OffLoopClient.connect_on`). Everything else paho does (its state, its queues, its
callbacks) stays on the event loop's thread; paho is not thread-safe.

Receiving is the client's own (issue 14, ingest at one reading per message): ``loop_read``
takes what the socket holds in one ``recv`` (up to 64 KiB) and splits every whole packet out
of it; a usual MQTT 5 QoS 0/1 PUBLISH is parsed here into :class:`Received` (its payload a
view of the read), anything else (CONNACK, SUBACK, PUBACK, QoS 2, an unusual PUBLISH) goes
through paho's own ``_packet_handle`` as paho's reader would hand it over. :meth:`ack_many`
writes the PUBACKs of many messages as one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.client import DISCONNECT, PUBACK, MQTTv5, _ConnectionState, time_func
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.properties import Properties

from broker.fast_properties import unpack_publish


class Received:
    """A received PUBLISH as :class:`OffLoopClient` hands it to ``on_message``: the fields of
    paho's ``MQTTMessage`` a session reads, without what paho builds for each one (a
    ``threading.Condition`` for its publish-wait, a topic decoded at every access, a match of
    the topic against per-filter callbacks nobody added)."""

    __slots__ = ("dup", "mid", "payload", "properties", "qos", "retain", "topic", "user_property")

    def __init__(self, *, mid: int, qos: int, retain: bool, dup: bool, topic: str,
                 payload: bytes | bytearray | memoryview, properties: Properties | None,
                 user_property: tuple[str, str] | None = None) -> None:
        self.mid, self.qos, self.retain, self.dup = mid, qos, retain, dup
        self.topic, self.payload, self.properties = topic, payload, properties
        # A PUBLISH whose only property is one user property (a concentrator's sequence
        # number) has it here, and no ``properties``.
        self.user_property = user_property

    @classmethod
    def of(cls, result: _packet.PublishPacket, topic: str) -> Received:
        return cls(mid=result.mid, qos=result.qos, retain=result.retain, dup=result.dup, topic=topic,
                   payload=result.payload, properties=result.properties)


class OffLoopClient(paho.Client):
    """A paho client whose socket is opened by :meth:`open_socket`, anywhere, then used on the loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opened: Any = None
        self._driver: asyncio.AbstractEventLoop | None = None
        # QoS 0 and 1 messages, acknowledged by the owner (manual_ack), go to on_message as
        # Received; anything else (QoS 2, per-filter callbacks) takes paho's own way.
        self._lean_receive = bool(kwargs.get("manual_ack"))
        # paho reads a packet in three or more recv calls (its first byte, its length a byte at
        # a time, its body) and handles one packet per read: at one reading per message that
        # was four system calls and paho's packet state machine per reading. loop_read here
        # takes up to _READ_SIZE bytes in one recv and splits every whole packet out of them;
        # the start of a packet cut off by the read waits in _partial for the rest.
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._wanted = 0  # bytes the packet started in _partial needs in all (0: not known yet)
        self._more = False  # a read of what TLS holds is scheduled

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._lean_receive = False  # paho's way matches topics to these callbacks
        super().message_callback_add(sub, callback)

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        if not self._lean_receive or command & 0x06 == 0x04:  # QoS 2: paho's state machine
            return super()._handle_publish()
        return self._lean_publish(command, self._in_packet["packet"])

    def _lean_publish(self, command: int, packet: bytes | bytearray | memoryview) -> MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH, handed to ``on_message`` as :class:`Received` (the owner acknowledges).
        An MQTT 5 packet of the usual form is parsed here (topic, packet id, properties, the
        payload a view of ``packet``); anything else by paho's ``decode_publish``."""
        try:
            received = _usual_publish(command, packet) if self._protocol == MQTTv5 else None
        except (IndexError, UnicodeDecodeError, ValueError):
            received = None
        if received is None:
            result = _packet.decode_publish(command, packet, self._protocol)
            try:
                received = Received.of(result, bytes(result.topic).decode("utf-8"))
            except UnicodeDecodeError:
                # paho reports a topic it cannot decode its own way
                return self._paho_packet(command, packet, len(packet))
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, received)
                except Exception as err:
                    self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:  # noqa: ARG002 - paho's signature
        """Read what the socket has (one recv) and handle every whole packet in it, as paho's
        ``loop_read`` handles them one read at a time: same callbacks, same errors."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = self._sock_recv(max(_READ_SIZE, self._wanted - self._partial_size))
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:  # TimeoutError, ConnectionError (no socket) included
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = time_func()
        if self._partial:
            self._partial.append(data)
            self._partial_size += len(data)
            if self._partial_size < self._wanted:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            data = b"".join(self._partial)
            self._partial.clear()
            self._partial_size = self._wanted = 0
        rc = self._packets(data)
        return self._loop_rc_handle(rc) if rc > 0 else MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packets(self, data: bytes) -> MQTTErrorCode:
        """Handle the whole packets in ``data``; keep an incomplete last one for the next read.
        A lean PUBLISH's payload is a view of ``data`` (immutable, kept alive by the view)."""
        view = memoryview(data)
        size, pos = len(data), 0
        lean = self._lean_receive
        while pos < size:
            command = data[pos]
            length, at, shift = 0, pos + 1, 0
            while True:
                if at >= size:
                    return self._keep(data, pos, 0)
                digit = data[at]
                at += 1
                length += (digit & 127) << shift
                if not digit & 128:
                    break
                shift += 7
                if at - pos > 4:  # more than 4 length bytes: paho's protocol error
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
            end = at + length
            if end > size:
                return self._keep(data, pos, end - pos)
            if lean and command & 0xF6 in (0x30, 0x32):  # PUBLISH, QoS 0 or 1
                rc = self._lean_publish(command, view[at:end])
            else:
                rc = self._paho_packet(command, view[at:end], length)
            if rc > 0:
                return rc
            if self._sock is None:  # the packet ended the connection (DISCONNECT)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            pos = end
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _keep(self, data: bytes, pos: int, wanted: int) -> MQTTErrorCode:
        self._partial = [data[pos:]]
        self._partial_size = len(data) - pos
        self._wanted = wanted
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _paho_packet(self, command: int, body: bytes | bytearray | memoryview, length: int) -> MQTTErrorCode:
        """One packet through paho's own handling, as its ``_packet_read`` hands it over."""
        self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": length, "packet": bytearray(body), "to_process": 0, "pos": 0}
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages (``ack(mid, 1)`` for each), their PUBACKs in one write:
        each is paho's, the success short form (0x40, length 2, packet id)."""
        if self._manual_ack and mids:
            self._packet_queue(PUBACK, struct.pack(f"!{len(mids)}L", *[_PUBACK | mid for mid in mids]), 0, 0)

    def finish(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages and disconnect: their PUBACKs and the DISCONNECT in one
        write, the socket left open. paho's ``disconnect`` closes the socket as soon as the
        DISCONNECT is handed to the kernel, and nothing then tells whether the broker read
        what came before it (see ``MqttSession._leave``). Here the broker closes the
        connection once it has read the DISCONNECT (MQTT 5, 3.14.4), which the reader sees as
        the end of the connection (``on_disconnect``, no error: paho's state is "disconnecting")."""
        acks = struct.pack(f"!{len(mids)}L", *[_PUBACK | mid for mid in mids]) if self._manual_ack else b""
        self._state = _ConnectionState.MQTT_CS_DISCONNECTING
        # Not queued as a DISCONNECT: paho closes the socket after writing one.
        self._packet_queue(0, acks + _DISCONNECT, 0, 0)

    def drive_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let ``loop`` drive the socket: paho reads when it is readable, writes when it asks to."""
        self._driver = loop
        self.on_socket_open = self._watch_socket
        self.on_socket_close = self._unwatch_socket
        self.on_socket_register_write = self._watch_writable
        self.on_socket_unregister_write = self._unwatch_writable

    def drop_socket(self) -> None:
        """Close the socket without a DISCONNECT (the broker then sends our will). paho's state
        says "not connected" afterwards, and its in-flight messages stay queued for the next one."""
        self._sock_close()

    def _watch_socket(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._driver is not None
        _no_delay(sock)
        self._driver.add_reader(sock, self._readable)

    def _readable(self) -> None:
        """Read what arrived. The event loop calls this only while the socket has bytes; TLS
        may hold decrypted bytes the loop cannot see: read them on the loop's next turn, so
        other tasks get their turns between reads."""
        self.loop_read()
        if not self._more and self._sock is not None and _tls_pending(self._sock):
            assert self._driver is not None
            self._more = True
            self._driver.call_soon(self._read_more)

    def _read_more(self) -> None:
        self._more = False
        if self._sock is not None and _tls_pending(self._sock):
            self._readable()

    def _sock_close(self) -> None:
        # What a dead connection left is nothing the next one may read.
        self._partial.clear()
        self._partial_size = self._wanted = 0
        super()._sock_close()

    def _unwatch_socket(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._driver is not None
        self._driver.remove_reader(sock)
        self._driver.remove_writer(sock)

    def _watch_writable(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._driver is not None
        self._driver.add_writer(sock, client.loop_write)

    def _unwatch_writable(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._driver is not None
        self._driver.remove_writer(sock)

    def prepare(self, host: str, port: int, keepalive: int, *, clean_start: bool, properties: Properties) -> None:
        """Set where and how to connect (on the loop, before :meth:`open_socket`); closes any old socket."""
        self.connect_async(host, port, keepalive, clean_start=clean_start, properties=properties)

    def open_socket(self) -> Any:
        """TCP connect and TLS handshake: blocking. Reads only settings made by :meth:`prepare`,
        so it may run in a worker thread while the loop goes on."""
        return super()._create_socket()

    def connect_on(self, sock: Any) -> MQTTErrorCode:
        """Send CONNECT over ``sock`` from :meth:`open_socket` (on the loop, like every other call)."""
        self._opened = sock
        try:
            return self.reconnect()
        finally:
            leftover, self._opened = self._opened, None
            if leftover is not None:  # reconnect failed before it took the socket
                with contextlib.suppress(OSError):
                    leftover.close()

    def _create_socket(self) -> Any:
        # paho's reconnect() calls this to open its socket; hand it the one opened off the loop.
        sock, self._opened = self._opened, None
        if sock is None:
            return super()._create_socket()  # a plain connect()/reconnect(): paho's own, blocking
        return sock


_READ_SIZE = 65536


def _usual_publish(command: int, packet: bytes | bytearray | memoryview) -> Received | None:
    """An MQTT 5 QoS 0/1 PUBLISH with a topic and properties of at most 127 bytes; None (or
    an IndexError, ValueError) for anything else: paho's ``decode_publish`` decides."""
    end = 2 + (packet[0] << 8 | packet[1])
    if end == 2 or end >= len(packet):
        return None  # no topic (an alias), or nothing after it
    topic = str(packet[2:end], "utf-8")
    mid = 0
    if command & 0x06:
        mid = packet[end] << 8 | packet[end + 1]
        end += 2
    length = packet[end]
    if length > 127 or end + 1 + length > len(packet):
        return None
    properties = user = None
    if length:
        user = _one_user_property(packet[end + 1:end + 1 + length])
        if user is None:
            properties, used = unpack_publish(bytes(packet[end:end + 1 + length]))
            if used != 1 + length:
                return None
    return Received(mid=mid, qos=(command & 0x06) >> 1, retain=bool(command & 0x01), dup=bool(command & 0x08),
                    topic=topic, payload=packet[end + 1 + length:], properties=properties, user_property=user)


def _one_user_property(buffer: bytes | bytearray | memoryview) -> tuple[str, str] | None:
    """The key and value when ``buffer`` (a PUBLISH's properties) is exactly one user property
    of MQTT strings paho accepts; None otherwise (UnicodeDecodeError for bad UTF-8)."""
    if buffer[0] != _USER_PROPERTY or len(buffer) < 5:
        return None
    key_end = 3 + (buffer[1] << 8 | buffer[2])
    if key_end + 2 > len(buffer) or key_end + 2 + (buffer[key_end] << 8 | buffer[key_end + 1]) != len(buffer):
        return None
    key, value = str(buffer[3:key_end], "utf-8"), str(buffer[key_end + 2:], "utf-8")
    if "\x00" in key or "\ufeff" in key or "\x00" in value or "\ufeff" in value:
        return None  # paho refuses these: its parser raises
    return key, value


_USER_PROPERTY = 38
_PUBACK = PUBACK << 24 | 2 << 16  # a PUBACK's first two bytes, over its two of packet id
_DISCONNECT = bytes((DISCONNECT, 0))  # normal disconnection, no reason code or properties


def _tls_pending(sock: Any) -> int:
    """Bytes a TLS socket decrypted and holds (the event loop cannot see them)."""
    pending = getattr(sock, "pending", None)
    return pending() if pending is not None else 0


def _no_delay(sock: Any) -> None:
    """Turn off Nagle's algorithm: paho writes a packet per call, and with Nagle a small
    request behind an unacknowledged one waits for the peer's delayed ACK (40 ms on Linux),
    which made a request/response round trip cost ~40 ms (measured by bench/firmware.py)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


__all__ = ["OffLoopClient", "Received"]

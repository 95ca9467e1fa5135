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
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties


class Received:
    """A received PUBLISH as :class:`OffLoopClient` hands it to ``on_message``: the fields of
    paho's ``MQTTMessage`` a session reads, without what paho builds for each one (a
    ``threading.Condition`` for its publish-wait, a topic decoded at every access, a match of
    the topic against per-filter callbacks nobody added)."""

    __slots__ = ("dup", "mid", "payload", "properties", "qos", "retain", "topic")

    def __init__(self, result: _packet.PublishPacket, topic: str) -> None:
        self.mid, self.qos, self.retain, self.dup = result.mid, result.qos, result.retain, result.dup
        self.topic, self.payload, self.properties = topic, result.payload, result.properties


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
        # a time, its body): at one reading per message that was four system calls a reading.
        # One recv of up to _READ_SIZE bytes now serves those reads from this buffer.
        self._read_buffer = bytearray()
        self._more = False  # a read of what the buffer holds is scheduled

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._lean_receive = False  # paho's way matches topics to these callbacks
        super().message_callback_add(sub, callback)

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        if not self._lean_receive or command & 0x06 == 0x04:  # QoS 2: paho's state machine
            return super()._handle_publish()
        result = _packet.decode_publish(command, self._in_packet["packet"], self._protocol)
        try:
            topic = bytes(result.topic).decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()  # paho reports a topic it cannot decode its own way
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, Received(result, topic))
                except Exception as err:
                    self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        return MQTTErrorCode.MQTT_ERR_SUCCESS

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
        """Read what arrived. The event loop calls this only while the socket has bytes: when
        the buffer (or TLS) still holds some after paho's read, read again on the loop's next
        turn, so other tasks get their turns between packets as they did without a buffer."""
        self.loop_read()
        if not self._more and self._sock is not None and (self._read_buffer or _tls_pending(self._sock)):
            assert self._driver is not None
            self._more = True
            self._driver.call_soon(self._read_more)

    def _read_more(self) -> None:
        self._more = False
        if self._sock is not None and (self._read_buffer or _tls_pending(self._sock)):
            self._readable()

    def _sock_recv(self, bufsize: int) -> bytes:
        buffered = self._read_buffer
        if not buffered:
            data = super()._sock_recv(max(bufsize, _READ_SIZE))
            if len(data) <= bufsize:
                return data  # all of it asked for, or b"" (closed)
            buffered += data
        chunk = bytes(buffered[:bufsize])
        del buffered[:bufsize]
        return chunk

    def _sock_close(self) -> None:
        self._read_buffer.clear()  # what a dead connection left is nothing the next one may read
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

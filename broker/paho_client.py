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
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties


class OffLoopClient(paho.Client):
    """A paho client whose socket is opened by :meth:`open_socket`, anywhere, then used on the loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opened: Any = None
        self._driver: asyncio.AbstractEventLoop | None = None

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

    def _watch_socket(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._driver is not None
        _no_delay(sock)
        self._driver.add_reader(sock, client.loop_read)

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


def _no_delay(sock: Any) -> None:
    """Turn off Nagle's algorithm: paho writes a packet per call, and with Nagle a small
    request behind an unacknowledged one waits for the peer's delayed ACK (40 ms on Linux),
    which made a request/response round trip cost ~40 ms (measured by bench/firmware.py)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


__all__ = ["OffLoopClient"]

"""Bench-only MQTT 5 clients that cost almost nothing per message, so a bench measures the
broker and ingest, not its own publishers (issue 14: at one reading per message Gridwire's
session as a publisher spent as much CPU as ingest).

Publishers write pre-framed QoS 1 PUBLISH packets (topic and ``gw-seq`` user property encoded
by hand) to a plain socket, keep at most the broker's receive maximum unacknowledged and, like
the edge forwarder's ``max_unconfirmed``, at most ``unconfirmed`` messages the cloud has not
confirmed on ``concentrator/<cid>/ack``. A subscriber answers every QoS 1 message with a
pre-built PUBACK. Each runs in its own process (``multiprocessing``), and reports its CPU.
Not a general client: no reconnects, no QoS 2, no TLS; a refusal raises.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

SEQ_PROPERTY = "gw-seq"


def _vbi(value: int) -> bytes:
    out = bytearray()
    while True:
        digit, value = value & 127, value >> 7
        out.append(digit | 128 if value else digit)
        if not value:
            return bytes(out)


def _text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _vbi(len(body)) + body


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    props = b"\x11" + (0).to_bytes(4, "big") + b"\x21" + (65535).to_bytes(2, "big")  # no session; receive max
    body = _text("MQTT") + bytes((5, 0xC2)) + (60).to_bytes(2, "big") + _vbi(len(props)) + props
    return _packet(0x10, body + _text(client_id) + _text(username) + _text(password))


def publish_packet(topic: str, payload: bytes, mid: int, seq: int | str) -> bytes:
    props = b"\x26" + _text(SEQ_PROPERTY) + _text(str(seq))
    return _packet(0x32, _text(topic) + mid.to_bytes(2, "big") + _vbi(len(props)) + props + payload)


def subscribe_packet(mid: int, topic_filter: str) -> bytes:
    return _packet(0x82, mid.to_bytes(2, "big") + b"\x00" + _text(topic_filter) + b"\x01")


class Connection:
    """One MQTT 5 connection on a blocking-then-non-blocking socket; :meth:`packets` parses."""

    def __init__(self, host: str, port: int, client_id: str, username: str, password: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id, username, password))
        self._buffer = bytearray()
        self.out = bytearray()
        kind, body = self._next_blocking()
        if kind != 0x20 or body[1] >= 0x80:
            raise RuntimeError(f"{client_id}: CONNACK refused: {bytes(body[:2])!r}")
        self.receive_maximum = _receive_maximum(body)
        self._mid = 0

    def next_mid(self) -> int:
        self._mid = self._mid % 65535 + 1
        return self._mid

    def subscribe(self, topic_filter: str) -> None:
        self.sock.sendall(subscribe_packet(self.next_mid(), topic_filter))
        kind, body = self._next_blocking()
        if kind != 0x90 or body[-1] >= 0x80:
            raise RuntimeError(f"SUBACK refused for {topic_filter}")

    def _next_blocking(self) -> tuple[int, memoryview]:
        while True:
            for found in self.packets():
                return found
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("broker closed the connection")
            self._buffer += chunk

    def feed(self) -> bool:
        """Read what the socket has; False when the broker closed it."""
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        self._buffer += chunk
        return bool(chunk)

    def packets(self) -> list[tuple[int, memoryview]]:
        """Whole packets received so far: (first byte, body)."""
        found: list[tuple[int, memoryview]] = []
        buffer, pos, size = self._buffer, 0, len(self._buffer)
        while size - pos >= 2:
            length, shift, index, complete = 0, 0, pos + 1, False
            while index < size and index - pos <= 4:
                digit = buffer[index]
                index += 1
                length |= (digit & 127) << shift
                shift += 7
                if not digit & 128:
                    complete = True
                    break
            if not complete or index + length > size:
                break
            found.append((buffer[pos], memoryview(bytes(buffer[index:index + length]))))
            pos = index + length
        del buffer[:pos]
        return found

    def flush(self) -> None:
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:sent]


def _receive_maximum(connack: memoryview) -> int:
    """The broker's receive maximum from a CONNACK body (65,535 when it names none)."""
    length, pos, shift = 0, 2, 0
    while True:
        digit = connack[pos]
        length |= (digit & 127) << shift
        pos, shift = pos + 1, shift + 7
        if not digit & 128:
            break
    end = pos + length
    while pos < end:
        ident = connack[pos]
        pos += 1
        if ident == 0x21:
            return int.from_bytes(connack[pos:pos + 2], "big")
        size = {0x11: 4, 0x12: None, 0x13: 2, 0x15: None, 0x16: None, 0x1A: None, 0x1C: None, 0x1F: None,
                0x22: 2, 0x24: 1, 0x25: 1, 0x26: None, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}.get(ident, 1)
        if size is None:
            text = int.from_bytes(connack[pos:pos + 2], "big")
            pos += 2 + text
            if ident == 0x26:
                pos += 2 + int.from_bytes(connack[pos:pos + 2], "big")
        else:
            pos += size
    return 65535


def _publish_parts(body: memoryview, qos: int) -> tuple[int, bytes]:
    """(packet id, payload) of a received PUBLISH body."""
    end = 2 + int.from_bytes(body[:2], "big")
    mid = int.from_bytes(body[end:end + 2], "big") if qos else 0
    end += 2 if qos else 0
    length, shift = 0, 0
    while True:
        digit = body[end]
        length |= (digit & 127) << shift
        end, shift = end + 1, shift + 7
        if not digit & 128:
            break
    return mid, bytes(body[end + length:])


@dataclass
class Concentrator:
    """What one publishing concentrator sends: ``(topic, payload)`` per message, seq 1.. in order."""

    cid: str
    password: str
    messages: Sequence[tuple[str, bytes]]
    warm_up: tuple[str, bytes]
    pending: set[int] = field(default_factory=set)
    # Readings per message when a message is a live batch (a seq each: gw-seq "first-last"); None: one each.
    counts: Sequence[int] | None = None


def publish(host: str, port: int, concentrators: list[Concentrator], *, unconfirmed: int, ready, start,
            results, confirmed: bool = True) -> None:
    """A publisher process: warm up (seq 0 until confirmed), tell ``ready``, wait for ``start``,
    send every message, and put (monotonic end, CPU seconds) on ``results`` once all are confirmed.
    With ``confirmed`` False (no ingest: the raw broker rate) it is done once all are PUBACKed."""
    conns = {}
    for conc in concentrators:
        conn = Connection(host, port, f"raw-{conc.cid}-{time.monotonic_ns() % 10**9}", conc.cid, conc.password)
        if confirmed:
            conn.subscribe(f"concentrator/{conc.cid}/ack")
        conns[conc.cid] = conn
    # Warm-up: ingest is subscribed and writing once seq 0 comes back confirmed.
    for conc in concentrators:
        conc.pending = {0} if confirmed else set()
    deadline = time.monotonic() + 120
    while any(conc.pending for conc in concentrators):
        for conc in concentrators:
            if conc.pending:
                conns[conc.cid].sock.sendall(publish_packet(*conc.warm_up, conns[conc.cid].next_mid(), 0))
        until = time.monotonic() + 1.0
        while time.monotonic() < until and any(conc.pending for conc in concentrators):
            _pump(conns, concentrators, timeout=0.1, blocking=True)
        if time.monotonic() > deadline:
            raise RuntimeError("ingest never confirmed the warm-up messages")
    for conn in conns.values():
        conn.sock.setblocking(False)
    ready.put(True)
    start.wait()
    cpu = time.process_time()
    state = {conc.cid: [0, 0] for conc in concentrators}  # next index, in flight (PUBACK not yet back)
    for conc in concentrators:
        conc.pending = set()
    # Each message's first seq (1, 2, ... or, for live batches, after the previous message's readings).
    firsts = {conc.cid: _firsts(conc) for conc in concentrators}
    selector = selectors.DefaultSelector()
    for cid, conn in conns.items():
        selector.register(conn.sock, selectors.EVENT_READ, cid)
    by_cid = {conc.cid: conc for conc in concentrators}
    while True:
        busy = False
        for cid, conn in conns.items():
            conc, (index, inflight) = by_cid[cid], state[cid]
            room = min(conn.receive_maximum - inflight, len(conc.messages) - index)
            if conc.counts is None:
                room = min(room, unconfirmed - len(conc.pending))
            if room > 0:
                parts = []
                sent = 0
                for k in range(index, index + room):
                    topic, payload = conc.messages[k]
                    first = firsts[cid][k]
                    if conc.counts is None:
                        parts.append(publish_packet(topic, payload, conn.next_mid(), first))
                        if confirmed:
                            conc.pending.add(first)
                    else:  # a live batch: unconfirmed bounds its readings, as the edge's outbox rows
                        count = conc.counts[k]
                        if conc.pending and len(conc.pending) + count > unconfirmed:
                            break
                        parts.append(publish_packet(topic, payload, conn.next_mid(), f"{first}-{first + count - 1}"))
                        if confirmed:
                            conc.pending.update(range(first, first + count))
                    sent += 1
                conn.out += b"".join(parts)
                state[cid] = [index + sent, inflight + sent]
            conn.flush()
            index, inflight = state[cid]
            busy = busy or bool(conc.pending) or index < len(conc.messages) or (not confirmed and inflight > 0)
        if not busy:
            break
        for key, _events in selector.select(timeout=1.0):
            cid = key.data
            conn = conns[cid]
            if not conn.feed():
                raise RuntimeError(f"{cid}: broker closed the connection")
            state[cid][1] -= _handle(conn, by_cid[cid])
    results.put((time.monotonic(), time.process_time() - cpu))
    for conn in conns.values():
        conn.sock.close()


def _firsts(conc: Concentrator) -> list[int]:
    if conc.counts is None:
        return list(range(1, len(conc.messages) + 1))
    out, seq = [], 1
    for count in conc.counts:
        out.append(seq)
        seq += count
    return out


def _pump(conns, concentrators, *, timeout: float, blocking: bool) -> None:
    for conc in concentrators:
        conn = conns[conc.cid]
        conn.sock.settimeout(timeout)
        try:
            if not conn.feed():
                raise RuntimeError(f"{conc.cid}: broker closed the connection")
        except TimeoutError:
            continue
        _handle(conn, conc)
        conn.sock.sendall(conn.out)
        conn.out.clear()


def _handle(conn: Connection, conc: Concentrator) -> int:
    """Handle received packets; return how many PUBACKs came back."""
    pubacks = 0
    for first, body in conn.packets():
        kind = first & 0xF0
        if kind == 0x40:
            if len(body) > 2 and body[2] >= 0x80:
                raise RuntimeError(f"{conc.cid}: broker refused a publish, reason {body[2]:#x}")
            pubacks += 1
        elif kind == 0x30:
            qos = (first >> 1) & 3
            mid, payload = _publish_parts(body, qos)
            for first_seq, last_seq in json.loads(payload)["seqs"]:
                conc.pending.difference_update(range(first_seq, last_seq + 1))
            if qos:
                conn.out += b"\x40\x02" + mid.to_bytes(2, "big")
    return pubacks


def subscribe(host: str, port: int, username: str, password: str, topic_filter: str, count: int, ready,
              results) -> None:
    """A subscriber process: PUBACK every message; put (monotonic end, CPU seconds) once ``count`` came."""
    conn = Connection(host, port, f"raw-sub-{time.monotonic_ns() % 10**9}", username, password)
    conn.subscribe(topic_filter)
    conn.sock.setblocking(False)
    ready.put(True)
    got, cpu = 0, None
    selector = selectors.DefaultSelector()
    selector.register(conn.sock, selectors.EVENT_READ)
    while got < count:
        selector.select(timeout=1.0)
        if not conn.feed():
            raise RuntimeError("subscriber: broker closed the connection")
        for first, body in conn.packets():
            if first & 0xF0 == 0x30:
                if cpu is None:
                    cpu = time.process_time()
                got += 1
                if first & 0x06:
                    conn.out += b"\x40\x02" + bytes(body[2 + int.from_bytes(body[:2], "big"):][:2])
        conn.flush()
    results.put((time.monotonic(), time.process_time() - (cpu or 0.0)))
    conn.sock.close()

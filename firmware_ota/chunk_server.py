"""The cloud's end of the firmware chunk protocol: :class:`ChunkServer` answers concentrators'
requests from the image store.

The protocol's messages are in ``broker/schemas/firmware.py``; the concentrator's end (the
Downloader and its cache) is ``firmware_ota/downloader.py``.

The server answers on the subtree of the concentrator that asked (its topic level), which is
the only subtree that concentrator may read (broker ACL). Every ChunkServer process joins the
shared subscription ``$share/firmware/concentrator/+/firmware/request``, so adding servers is
starting processes. A request it cannot serve is answered with an error, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging

from pydantic import ValidationError

from broker import topics
from broker.errors import Invalid
from broker.schemas.firmware import CHUNK, REQUEST, ChunkError, ChunkRequest
from broker.session import Message, MqttSession, publish_properties
from firmware_ota.errors import FirmwareNotFound
from firmware_ota.store import FirmwareStore

log = logging.getLogger(__name__)

SHARE_GROUP = "firmware"
ALL_FIRMWARE_REQUESTS = topics.ALL_FIRMWARE_REQUESTS
# Correlation data longer than this is not ours (the Downloader sends 16 bytes).
MAX_CORRELATION = 64


class ChunkRefused(Invalid):
    """A request the server answers with an error instead of bytes."""

    def __init__(self, code: ChunkError, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_request(payload: bytes) -> ChunkRequest:
    """The request in ``payload``; :class:`ChunkRefused` (BAD_REQUEST) naming the problem otherwise."""
    try:
        return ChunkRequest.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise ChunkRefused(ChunkError.BAD_REQUEST, problems[:500]) from None


def serve_request(store: FirmwareStore, payload: bytes) -> tuple[bytes, dict[str, str]]:
    """The first answer to one request payload: (bytes, user properties). Never raises for bad input."""
    return serve_chunks(store, payload)[0]


def serve_chunks(store: FirmwareStore, payload: bytes) -> list[tuple[bytes, dict[str, str]]]:
    """Every answer to one request payload, one per chunk, or one error. Never raises for bad input.

    The chunks are read from the image in one read and cut at the image's end.
    """
    try:
        request = parse_request(payload)
        try:
            manifest = store.get(request.firmware_id).manifest
        except FirmwareNotFound:
            raise ChunkRefused(ChunkError.UNKNOWN_FIRMWARE, f"no firmware {request.firmware_id!r}") from None
        if request.offset >= manifest.size:
            raise ChunkRefused(ChunkError.OUT_OF_RANGE,
                               f"offset {request.offset} is past the end of the {manifest.size}-byte image")
        try:
            data = store.read(request.firmware_id, request.offset, request.length * request.count)
        except ValueError as exc:
            raise ChunkRefused(ChunkError.OUT_OF_RANGE, str(exc)) from None
        except FirmwareNotFound:
            raise ChunkRefused(ChunkError.UNKNOWN_FIRMWARE, f"no firmware {request.firmware_id!r}") from None
    except ChunkRefused as refused:
        return [(b"", {"error": str(refused.code), "reason": refused.reason})]
    length = request.length
    return [(data[start:start + length], {"firmwareId": request.firmware_id, "offset": str(request.offset + start)})
            for start in range(0, len(data), length)]


def request_firmware_id(payload: bytes) -> str | None:
    """Best-effort firmware id of a payload, for logs about a refused request."""
    try:
        value = json.loads(payload).get("firmwareId")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class ChunkServer:
    """Answers concentrators' chunk requests from a :class:`FirmwareStore` (cloud side)."""

    def __init__(self, *, session: MqttSession, store: FirmwareStore, group: str = SHARE_GROUP) -> None:
        self._session = session
        self._store = store
        self._filter = topics.shared(group, ALL_FIRMWARE_REQUESTS)
        self.chunks_served = 0
        self.bytes_served = 0
        self.bytes_by_concentrator: dict[str, int] = {}
        self.errors_sent = 0
        self.dropped = 0

    async def start(self) -> None:
        """Join the shared subscription (the session must be connected)."""
        await self._session.subscribe(self._filter, self.handle)

    def answers(self, payload: bytes) -> list[tuple[bytes, dict[str, str]]]:
        """What to publish for one request payload (:func:`serve_chunks` of the store)."""
        return serve_chunks(self._store, payload)

    async def handle(self, message: Message) -> None:
        try:
            parsed = topics.parse(message.topic)
        except topics.TopicError:
            parsed = None
        if parsed is None or parsed.kind != "concentrator_firmware" or parsed.rest != (REQUEST,) \
                or parsed.concentrator is None:
            self.dropped += 1
            log.warning("firmware request on unexpected topic %r dropped", message.topic[:200])
            return
        correlation = message.correlation_data
        if not correlation or len(correlation) > MAX_CORRELATION:
            # Without correlation data the requester cannot match an answer: nothing to send.
            self.dropped += 1
            log.warning("firmware request from %s without usable correlation data dropped (payload %r)",
                        parsed.concentrator, message.payload[:200])
            return
        answers = self.answers(message.payload)
        for data, props in answers:
            if "error" in props:
                self.errors_sent += 1
                log.warning("firmware request from %s refused: %s %s (firmware %r)", parsed.concentrator,
                            props["error"], props["reason"], request_firmware_id(message.payload))
            else:
                self.chunks_served += 1
                self.bytes_served += len(data)
                self.bytes_by_concentrator[parsed.concentrator] = \
                    self.bytes_by_concentrator.get(parsed.concentrator, 0) + len(data)
        try:
            answer = topics.concentrator_firmware(parsed.concentrator, CHUNK)
        except topics.TopicError:
            self.dropped += 1
            log.warning("firmware request on %r: cannot answer that concentrator id", message.topic[:200])
            return
        # Every chunk in flight at once (the session bounds how many QoS 1 messages are unacknowledged).
        await asyncio.gather(*(
            self._session.publish(answer, data, qos=1,
                                  properties=publish_properties(correlation_data=correlation, user_properties=props))
            for data, props in answers))

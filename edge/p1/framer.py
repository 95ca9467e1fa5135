"""Cut a P1 byte stream into telegrams: arbitrary chunks in, complete ``/...!CRC\\r\\n`` frames out.

The serial line delivers telegrams in pieces, may start mid-telegram, and can carry noise.
A frame starts at ``/`` and ends at ``!`` + four hex digits + CRLF (``!`` + CRLF in DSMR 2.2/3.0,
which have no CRC). A valid DSMR 5 telegram
has exactly one ``/`` (its first byte), so the last ``/`` before an end marker is where the
telegram starts: everything before it was noise or a telegram cut short, and is dropped.
The buffer is bounded: a frame that grows past ``max_size`` without an end is dropped.
Whether a frame's CRC and content are right is the parser's business, not the framer's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 8192
_END_TAIL = 6  # four hex digits of CRC and CRLF after the '!'
_TAIL_RE = re.compile(rb"^[0-9A-Fa-f]{4}\r\n$")


@dataclass(slots=True)
class FramerStats:
    """What the framer has seen, for the reader's counters."""

    frames: int = 0
    dropped_bytes: int = 0
    # Frames begun with '/' but abandoned because another '/' came before their end.
    truncated: int = 0
    # Frames dropped because they grew past max_size without an end.
    oversize: int = 0


class TelegramFramer:
    """Incremental framer: ``feed`` chunks, get back the complete frames they finished."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 16:
            raise ValueError("max_size must be at least 16 bytes")
        self.max_size = max_size
        self.stats = FramerStats()
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every frame it completed, oldest first."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while True:
            bang = buf.find(b"!")
            if bang < 0:
                self._keep_from(buf.rfind(b"/"))
                if len(buf) > self.max_size:
                    self.stats.oversize += 1
                    self._drop(len(buf), abandoned=False)
                return frames
            start = buf.rfind(b"/", 0, bang)
            if start < 0:
                # An end marker with no start: the tail of a telegram we joined late, or noise.
                self._drop(bang + 1)
                continue
            self._keep_from(start)
            bang -= start
            if buf[bang + 1 : bang + 3] == b"\r\n":
                # DSMR 2.2/3.0: no CRC after the '!' (the parser decides whether that may be).
                end = bang + 3
            else:
                if len(buf) < bang + 1 + _END_TAIL:
                    return frames
                if not _TAIL_RE.match(buf[bang + 1 : bang + 1 + _END_TAIL]):
                    # Not a real end (noise that contains '!'): skip past it and look again.
                    self._drop(bang + 1)
                    continue
                end = bang + 1 + _END_TAIL
            frame = bytes(buf[:end])
            del buf[:end]
            if len(frame) > self.max_size:
                self.stats.oversize += 1
                self.stats.dropped_bytes += len(frame)
                continue
            self.stats.frames += 1
            frames.append(frame)

    def _keep_from(self, start: int) -> None:
        """Drop everything before ``start`` (-1: drop all), counting a frame cut short."""
        cut = len(self._buf) if start < 0 else start
        if cut:
            self._drop(cut)

    def _drop(self, count: int, *, abandoned: bool = True) -> None:
        if count <= 0:
            return
        if abandoned and self._buf[:1] == b"/":
            self.stats.truncated += 1
            logger.warning("P1 telegram cut short: %d bytes dropped, starting %r", count, bytes(self._buf[:60]))
        self.stats.dropped_bytes += count
        del self._buf[:count]

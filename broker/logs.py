"""Logging set-up for every Gridwire process: plain text, or JSON lines that carry what is being
handled, so one command or one reading can be followed across processes with ``grep``.

What is being handled is a context variable. The MQTT session sets it for every received
message it hands to a handler (:func:`handling`), so any log line written while that handler
runs names the message's correlation id (the ``correlationId`` user property, else its MQTT 5
correlation data) and the seq of a concentrator's reading (``gw-seq``). Code that starts work of
its own (the API accepting a request) names it with :func:`bind`. Extracting the ids is left to
the formatter: the session only stores a reference per message, and nothing is computed unless
a line is written.

Nothing secret goes through here on purpose: settings log their URLs without passwords
(``safe_url``), secrets are ``SecretStr``; ``tests/test_no_secrets_logged.py`` runs processes
with known secrets and searches their logs.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

# The received message being handled (anything with ``correlation_data`` and ``user_properties``).
_message: ContextVar[Any] = ContextVar("gridwire_message", default=None)
# Ids named explicitly by the code doing the work (the API's correlation id, a command id).
_bound: ContextVar[Mapping[str, str] | None] = ContextVar("gridwire_log_ids", default=None)

CORRELATION_PROPERTY = "correlationId"  # the one the domain and the core set
SEQ_PROPERTY = "gw-seq"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def handling(message: Any) -> None:  # noqa: ANN401 - a broker Message (imported by the session, not here)
    """Mark ``message`` as what the current task handles (the session calls this per message)."""
    _message.set(message)


def bind(**ids: str) -> None:
    """Name ids (``correlation=...``, ``command=...``) for every line the current task logs from now."""
    _bound.set({**(_bound.get() or {}), **ids})


def current_ids() -> dict[str, str]:
    """The ids of what the current task handles: bound ones, then the message's."""
    found: dict[str, str] = {}
    message = _message.get()
    if message is not None:
        props = message.user_properties
        correlation = props.get(CORRELATION_PROPERTY) or _correlation_text(message.correlation_data)
        if correlation:
            found["correlation"] = correlation
        seq = props.get(SEQ_PROPERTY)
        if seq is not None:
            found["seq"] = seq
        found["topic"] = message.topic
    found.update(_bound.get() or {})
    return found


def _correlation_text(data: bytes | None) -> str | None:
    if not data:
        return None
    if len(data) == 16:
        return str(uuid.UUID(bytes=bytes(data)))
    try:
        return bytes(data).decode()
    except UnicodeDecodeError:
        return bytes(data).hex()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids being handled, the process."""

    def __init__(self, *, process: str | None = None) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if self._process:
            entry["process"] = self._process
        entry.update(current_ids())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(*, level: str = "INFO", format: Literal["text", "json"] = "text",  # noqa: A002 - the setting's name
              process: str | None = None) -> None:
    """Set up the root logger once for a process: text as before, or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(process=process) if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


__all__ = ["JsonFormatter", "bind", "configure", "current_ids", "handling"]

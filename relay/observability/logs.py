"""Structured logs: one JSON object per line, with the context fields a log call passes as ``extra``.

Every line carries ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``message``, plus
``extra`` fields such as ``transfer_id`` (hex), ``gateway``, ``neighbour``, ``link``, ``sae`` or ``key_id``
when the call site knows them, and ``exception`` for a traceback. Log calls never pass key material, and
as a second line of defence the formatter refuses to render byte strings: a ``bytes`` extra becomes
``"<N bytes>"``, so a careless ``extra={"key": key.key}`` cannot leak the key.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _safe(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (no embedded newlines: tracebacks are escaped in the string)."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in document:
                document[name] = _safe(value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(
    log_format: str = "text",
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    static: dict[str, Any] | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one stream handler in ``log_format`` ("text" or "json")."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(static) if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler

"""Structured logging: every line says what happened and to which session.

Call sites use the standard library with ``extra`` fields::

    log.info("window committed", extra={"session": sid, "window": 3, "segments": 5})

The formatter appends the extra fields as ``key=value`` (text) or emits one JSON
object per line (``FLOWBOT_LOG_FORMAT=json``, for CloudWatch Logs Insights).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        base = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))}"
            f".{int(record.msecs):03d} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        out = f"{base} {fields}" if fields else base
        if record.exc_info:
            out += "\n" + self.formatException(record.exc_info)
        return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send flowbot's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_flowbot", False):
            root.removeHandler(old)
    handler._flowbot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that says nothing about our sessions.
    for noisy in ("botocore", "urllib3", "faster_whisper", "httpx", "aiortc", "aioice", "libav"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

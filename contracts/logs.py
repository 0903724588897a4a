"""Structured logging: every line says what happened and to which session.

Call sites use the standard library with ``extra`` fields::

    log.info("window committed", extra={"session": sid, "window": 3, "segments": 5})

The formatter appends the extra fields as ``key=value`` (text) or emits one JSON
object per line (``FLOWBOT_LOG_FORMAT=json``, for CloudWatch Logs Insights).

Fields carry user-supplied text (meeting ids, topics, stream names), so a text
line cannot be forged: a value with spaces, quotes, ``=`` or anything
unprintable is written as a quoted string with escapes (``meeting="a\nb"``),
unprintable characters in messages are escaped, and traceback lines are
indented, so every line that starts in column 0 is one record.

Error details name URLs (a notes endpoint, an S3 endpoint), and a URL can carry
credentials (``http://svc:SECRET@host/v1``, ``?api_key=...``): both formats
strip them from every message, field and traceback (:func:`redact_urls`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from contracts.settings import LogFormat

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


_PLAIN = re.compile(r"[^\s\"'=\\]+")
#: ``scheme://user:password@`` (the user info of a URL, up to its ``@``).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#\"'<>]+@")  # greedy: a password may hold "@"
#: A query parameter whose name says it is a secret (``?api_key=...``, ``&X-Amz-Signature=...``).
_SECRET_PARAM = re.compile(
    r"(?i)([?&][\w.-]*(?:key|token|secret|password|passwd|signature|credential)[\w.-]*=)[^&#\s\"'<>]*"
)


def redact_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    User info (``http://user:pass@host`` -> ``http://***@host``) and query
    parameters named like a secret (``?api_key=x`` -> ``?api_key=***``).
    """
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def _escape(text: str) -> str:
    """``text`` with backslashes and every unprintable character escaped (newlines, NUL, U+2028 ...)."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c.isprintable():
            out.append(c)
        else:
            out.append(repr(c)[1:-1])  # \n, \x00, \u2028 ...
    return "".join(out)


def text_value(value: object) -> str:
    """One field value for the text format: bare if plain, else quoted with escapes."""
    text = str(value)
    if text and _PLAIN.fullmatch(text) and text.isprintable():
        return text
    return '"' + _escape(text).replace('"', '\\"') + '"'


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, one line per record (tracebacks indented)."""

    def format(self, record: logging.LogRecord) -> str:
        base = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))}"
            f".{int(record.msecs):03d} {record.levelname:<7} {record.name}: "
            f"{_escape(redact_urls(record.getMessage()))}"
        )
        fields = " ".join(f"{_escape(k)}={text_value(redact_urls(str(v)))}" for k, v in _extras(record).items())
        out = f"{base} {fields}" if fields else base
        if record.exc_info:
            lines = redact_urls(self.formatException(record.exc_info)).splitlines()
            out += "".join("\n    " + _escape(line) for line in lines)
        return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_urls(record.getMessage()),
        }
        data.update({k: redact_urls(v) if isinstance(v, str) else v for k, v in _extras(record).items()})
        if record.exc_info:
            data["exc"] = redact_urls(self.formatException(record.exc_info))
        return json.dumps(data, default=lambda v: redact_urls(str(v)))


def configure_logging(level: str = "INFO", fmt: LogFormat = LogFormat.TEXT) -> None:
    """Send flowbot's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == LogFormat.JSON else TextFormatter())
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

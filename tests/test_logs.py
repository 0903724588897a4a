"""Text logs cannot be forged by user-supplied text (issue 11 #5)."""

from __future__ import annotations

import ast
import json
import logging
import re
import sys

import pytest

from contracts.logs import JsonFormatter, TextFormatter

FORGED = "m1\n12:00:00.000 INFO    control.api: session finalized session=victim state=completed"


def _record(msg: str = "session started", exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad meeting {FORGED}")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("control.api", logging.INFO, __file__, 1, msg, (), exc_info)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    "value",
    [FORGED, "a\x00b", "a\rb", "x\u2028y", "tab\there", "evil session=victim", 'q"uote', "back\\slash\\n"],
)
def test_a_field_value_stays_on_its_line_and_in_its_field(value: str) -> None:
    line = TextFormatter().format(_record(meeting=value, session="s1"))
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\u2028" not in line
    # Read back as logfmt: exactly the two fields, and the value comes back unchanged.
    fields = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)', line.split("session started ", 1)[1])
    assert [k for k, _ in fields] == ["meeting", "session"]
    assert ast.literal_eval(fields[0][1]) == value


def test_plain_values_are_written_as_they_are() -> None:
    line = TextFormatter().format(_record(session="2c6e-41", window=3, took_s=0.25))
    assert line.endswith("session started session=2c6e-41 window=3 took_s=0.25")


def test_messages_and_tracebacks_cannot_start_a_line_of_their_own() -> None:
    out = TextFormatter().format(_record(f"publish refused for {FORGED}", exc=True, session="s1"))
    first, *rest = out.split("\n")
    assert "publish refused for m1\\n12:00:00.000" in first
    assert rest and all(line.startswith("    ") for line in rest)  # column 0 starts a record, nothing else


def test_json_lines_stay_json() -> None:
    line = JsonFormatter().format(_record(meeting=FORGED))
    assert "\n" not in line and json.loads(line)["meeting"] == FORGED


def test_credentials_in_urls_never_reach_a_log_line() -> None:
    """Issue 20 #4: error details name endpoints, and an endpoint URL can carry credentials."""
    url = "http://svc:S3cr3t@notes.internal:8000/v1"
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, f"failed: {url}", (), sys.exc_info())
    record.__dict__.update(
        {"detail": f"HTTP 502 from {url}", "signed": "https://b.s3.amazonaws.com/k?X-Amz-Signature=abcd&x=1"}
    )
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert "S3cr3t" not in line and "abcd" not in line, line
        assert "notes.internal:8000/v1" in line and "x=1" in line  # the rest of the detail stays

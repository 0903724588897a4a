"""Coordinator request bodies that break JSON parsers get a 400, never a 500 (issue 11 #5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.settings import Settings
from control.api import Coordinator
from control.context import build_local_context
from control.launch import LaunchResult
from stores.base import Session


class NoIngest:
    """A launcher that launches nothing (the bodies under test never get that far, or need not)."""

    def launch(self, session: Session) -> LaunchResult:
        return LaunchResult(f"rtmp://127.0.0.1:1935/live/{session.stream_key}", "test")

    def stop(self, session: Session) -> None:
        pass


@pytest.fixture
def coordinator(tmp_path: Path) -> Coordinator:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", diarization="none")
    return Coordinator(build_local_context(settings, NoIngest()))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action": "get_session", "session_id": ' + b"9" * 5000 + b"}",  # past Python's 4300-digit limit
        b'{"action": "start_session", "meeting_id": "m", "user_id": ' + b"1" * 20_000 + b"}",
        b"[" * 30_000 + b"]" * 30_000,  # nesting deeper than the parser's recursion limit
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"\xff\xfe{}",
        b'{"action": "get_session", "session_id": "\\ud800"}',  # a lone surrogate
        b'{"action": "start_session", "meeting_id": "m\\n12:00 INFO forged", "user_id": "u"}',
        b'{"action": "start_session", "meeting_id": "m\\u0000", "user_id": "u"}',
    ],
)
def test_hostile_json_is_a_clear_400(coordinator: Coordinator, raw: bytes) -> None:
    resp = coordinator.handle("POST", {}, raw)
    assert 400 <= resp.status < 500, resp.body
    assert resp.body["error"]["code"] in {"invalid_json", "invalid_body", "invalid_field", "unknown_session"}
    json.dumps(resp.body)  # the answer itself serialises

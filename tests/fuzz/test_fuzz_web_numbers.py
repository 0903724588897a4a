"""Fuzzing the numbers the web front reads from paths and headers (issue 20 #6).

``str.isdigit()`` before ``int()`` let ``²`` and ``①`` through to a 500 (``/audio/²``) or
a dead event stream (``Last-Event-ID: ²``). Any text now gets a 200, 400 or 404, never a 500.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from contracts.settings import Settings
from control.api import Coordinator
from control.context import build_local_context
from flowbot.web.app import build_app
from flowbot.web.guard import ascii_number
from stores.base import SessionState
from tests.test_api_bodies import NoIngest

any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
# Header values reach the server as Latin-1 bytes: every byte but CR, LF and NUL.
header_text = st.text(alphabet=st.characters(max_codepoint=255, exclude_characters="\r\n\x00"), max_size=40)


@given(any_text)
def test_ascii_number_takes_ascii_digits_only(text: str) -> None:
    value = ascii_number(text, 9)
    if value is None:
        assert not (0 < len(text) <= 9 and text.isascii() and text.isdigit())
    else:
        assert text.isascii() and text.isdigit() and int(text) == value


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[TestClient, str]]:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-web-"))
    ctx = build_local_context(Settings.from_env({}, data_dir=folder, diarization="none"), NoIngest())
    coordinator = Coordinator(ctx)
    started = coordinator.handle(
        "POST", {}, b'{"action": "start_session", "meeting_id": "m", "user_id": "u", "topic": "t"}'
    )
    sid = started.body["session_id"]
    ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)  # its feed ends
    with TestClient(build_app(ctx, coordinator), base_url="http://127.0.0.1") as test_client:
        yield test_client, sid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(any_text)
def test_any_audio_window_is_a_4xx_never_a_500(client: tuple[TestClient, str], window: str) -> None:
    http, sid = client
    status = http.get(f"/sessions/{sid}/audio/{quote(window, safe='')}").status_code
    assert status in (400, 404), (window, status)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header_text)
def test_any_last_event_id_is_a_400_or_the_whole_stream(client: tuple[TestClient, str], last_id: str) -> None:
    http, sid = client
    resp = http.get(f"/sessions/{sid}/events", headers=[(b"last-event-id", last_id.encode("latin-1"))])
    if resp.status_code == 200:
        assert "event: state" in resp.text, (last_id, resp.text[:200])  # the stream ran to its end
    else:
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_last_event_id", last_id

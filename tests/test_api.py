"""The coordinator API: session life cycle, bad input, auth, and the workflow's outcome."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord, WindowStatus
from contracts.settings import Settings
from control.access import Caller
from control.api import Coordinator
from control.context import build_local_context
from control.lambda_handlers import url_event_response
from flowbot.launch import EmbeddedLauncher
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from stores.base import SessionProgress, SessionState
from streams.embedded import EmbeddedStream


def call(api: Coordinator, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = api.handle("POST", headers or {}, raw)
    return resp.status, resp.body


def start(api: Coordinator) -> dict:
    status, body = call(api, {"action": "start_session", "meeting_id": "m1", "user_id": "u1", "topic": "Planning"})
    assert status == 200, body
    return body


def test_start_get_end_and_workflow_completion(api: Coordinator) -> None:
    started = start(api)
    assert started["state"] == "starting"
    assert started["rtmp_url"].startswith("rtmp://127.0.0.1:") and started["rtmp_url"].endswith(started["stream_key"])
    sid = started["session_id"]
    status, got = call(api, {"action": "get_session", "session_id": sid})
    assert status == 200 and got["state"] == "starting" and "stream_key" not in got
    # The processor committed one window and the end of stream.
    seg = TranscriptSegment(sid, 0, 0, 0.5, 2.0, "We decided to ship on Friday.", "S1")
    api.ctx.transcripts.commit_window(WindowRecord(sid, 0, 0, 32000), [seg], SessionProgress(sid, 1, 32000, 32000))
    status, ended = call(api, {"action": "end_session", "session_id": sid})
    assert status == 200 and ended["state"] == "processing"
    api.ctx.workflow.join(sid, timeout=30)  # type: ignore[attr-defined]
    status, got = call(api, {"action": "get_session", "session_id": sid})
    assert got["state"] == "completed", got
    assert got["progress"]["windows_done"] == 1 and got["progress"]["stream_ended"]
    assert got["notes"]["decisions"] == [{"text": "We decided to ship on Friday.", "start": 0.5, "speaker": "S1"}]
    assert got["notes"]["generator"] == "offline-extractive-v1" and got["notes"]["version"] == 2


def test_renaming_a_speaker_after_the_notes_renames_them_in_the_notes(api: Coordinator) -> None:
    sid = start(api)["session_id"]
    segs = [
        TranscriptSegment(sid, 0, 0, 0.5, 2.0, "We decided to ship on Friday.", "S1"),
        TranscriptSegment(sid, 0, 1, 2.5, 4.0, "I will update the deployment scripts.", "S2"),
    ]
    api.ctx.transcripts.commit_window(WindowRecord(sid, 0, 0, 64000), segs, SessionProgress(sid, 1, 64000, 64000))
    call(api, {"action": "end_session", "session_id": sid})
    api.ctx.workflow.join(sid, timeout=30)  # type: ignore[attr-defined]
    status, _ = call(api, {"action": "rename_speaker", "session_id": sid, "speaker": "S2", "name": "Dana"})
    assert status == 200
    _, got = call(api, {"action": "get_session", "session_id": sid})
    notes = got["notes"]
    assert notes["action_items"][0]["owner"] == "Dana" and notes["speakers"]["S2"] == "Dana"
    assert set(notes["talk_time"]) == {"S1", "Dana"}
    assert notes["decisions"][0]["speaker"] == "S1"


def test_failed_windows_make_a_partial_session_with_the_reason(api: Coordinator) -> None:
    sid = start(api)["session_id"]
    store = api.ctx.transcripts
    store.commit_window(
        WindowRecord(sid, 0, 0, 480000),
        [TranscriptSegment(sid, 0, 0, 1, 2, "Hello there.", "S1")],
        SessionProgress(sid, 1, 480000),
    )
    store.commit_window(
        WindowRecord(sid, 1, 480000, 960000, WindowStatus.FAILED, "RuntimeError: CUDA out of memory"),
        [],
        SessionProgress(sid, 2, 960000, 960000),
    )
    call(api, {"action": "end_session", "session_id": sid})
    api.ctx.workflow.join(sid, timeout=30)  # type: ignore[attr-defined]
    _, got = call(api, {"action": "get_session", "session_id": sid})
    assert got["state"] == "partial"
    assert "1 window(s) failed: 30-60s (RuntimeError: CUDA out of memory)" in got["reason"]
    assert got["progress"]["failures"][0]["window_index"] == 1
    assert got["notes"] is not None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "empty_body"),
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_body"),
        ({"action": "launch_rockets"}, 400, "unknown_action"),
        ({"meeting_id": "m"}, 400, "unknown_action"),
        ({"action": "start_session", "user_id": "u"}, 400, "missing_field"),
        ({"action": "start_session", "meeting_id": 5, "user_id": "u"}, 400, "invalid_field"),
        ({"action": "start_session", "meeting_id": "m" * 500, "user_id": "u"}, 400, "invalid_field"),
        ({"action": "get_session", "session_id": "no-such-session"}, 404, "unknown_session"),
        ({"action": "end_session", "session_id": "never-started"}, 404, "unknown_session"),
        ({"action": "end_session"}, 400, "missing_field"),
        (b"x" * 70000, 413, "body_too_large"),
    ],
)
def test_bad_requests_get_clear_4xx_errors(api: Coordinator, body: object, status: int, code: str) -> None:
    before = api.ctx.sessions.list()
    got_status, got = call(api, body)
    assert got_status == status and got["error"]["code"] == code and got["error"]["message"]
    assert api.ctx.sessions.list() == before  # nothing accepted was changed


def test_ending_twice_is_a_conflict_and_keeps_the_first_end(api: Coordinator) -> None:
    sid = start(api)["session_id"]
    assert call(api, {"action": "end_session", "session_id": sid})[0] == 200
    status, body = call(api, {"action": "end_session", "session_id": sid})
    assert status == 409 and body["error"]["code"] == "invalid_state"


def test_rename_speaker(api: Coordinator) -> None:
    sid = start(api)["session_id"]
    api.ctx.transcripts.commit_window(
        WindowRecord(sid, 0, 0, 16000),
        [TranscriptSegment(sid, 0, 0, 0, 1, "Hi.", "S2")],
        SessionProgress(sid, 1, 16000),
    )
    status, body = call(api, {"action": "rename_speaker", "session_id": sid, "speaker": "S2", "name": "Dana"})
    assert status == 200 and body["speakers"] == {"S2": "Dana"}
    status, body = call(api, {"action": "rename_speaker", "session_id": sid, "speaker": "S9", "name": "X"})
    assert status == 404 and body["error"]["code"] == "unknown_speaker"


def test_method_and_token(settings: Settings, tmp_path: Path) -> None:
    secured = settings.replace(api_token="s3cret")
    rtmp = RtmpRelay(IngestHub(EmbeddedStream(tmp_path / "x.db")), "127.0.0.1", 0)
    api = Coordinator(build_local_context(secured, EmbeddedLauncher(rtmp, "127.0.0.1")))
    body = {"action": "get_session", "session_id": "abc"}
    assert call(api, body)[0] == 401
    assert call(api, body, {"Authorization": "Bearer wrong"})[0] == 401
    assert call(api, body, {"Authorization": "Bearer s3cret"})[0] == 404
    assert api.handle("GET", {}, b"").status == 405


def test_users_act_only_on_their_own_sessions(settings: Settings, tmp_path: Path) -> None:
    """The one ownership rule (control.access.may_access) behind every action."""
    callers = {
        "Bearer alice": Caller("alice", "authenticated"),
        "Bearer bob": Caller("bob", "authenticated"),
        "Bearer service": Caller(None, "service_role"),
    }

    def authenticate(headers: Mapping[str, str]) -> Caller:
        try:
            return callers[headers.get("authorization", "")]
        except KeyError:
            raise PermissionError("unknown token") from None

    ingest = RtmpRelay(IngestHub(EmbeddedStream(tmp_path / "x.db")), "127.0.0.1", 0)
    ctx = build_local_context(settings, EmbeddedLauncher(ingest, "127.0.0.1"))
    api = Coordinator(dataclasses.replace(ctx, authenticate=authenticate))
    alice, bob, service = ({"authorization": f"Bearer {n}"} for n in ("alice", "bob", "service"))
    status, started = call(api, {"action": "start_session", "meeting_id": "m1"}, alice)
    assert status == 200 and started["user_id"] == "alice"
    status, body = call(api, {"action": "start_session", "meeting_id": "m2", "user_id": "bob"}, alice)
    assert status == 403 and body["error"]["code"] == "forbidden"
    get = {"action": "get_session", "session_id": started["session_id"]}
    assert call(api, get, alice)[0] == 200 and call(api, get, service)[0] == 200
    status, body = call(api, get, bob)
    assert status == 404 and body["error"]["code"] == "unknown_session"  # not even its existence
    assert call(api, {"action": "end_session", "session_id": started["session_id"]}, bob)[0] == 404
    status, body = call(api, {"action": "start_session", "meeting_id": "m3"}, service)
    assert status == 400 and body["error"]["code"] == "missing_field"  # the service role names the user
    assert call(api, get)[0] == 401


def test_lambda_function_url_event_shape(api: Coordinator) -> None:
    import base64

    event = {
        "requestContext": {"http": {"method": "POST"}},
        "headers": {"content-type": "application/json"},
        "body": base64.b64encode(json.dumps({"action": "get_session", "session_id": "nope"}).encode()).decode(),
        "isBase64Encoded": True,
    }
    resp = url_event_response(api, event)
    assert resp["statusCode"] == 404 and json.loads(resp["body"])["error"]["code"] == "unknown_session"


def test_workflow_times_out_into_partial_with_the_reason(settings: Settings, tmp_path: Path) -> None:
    from control.workflow import default_steps

    ctx = build_local_context(
        settings, EmbeddedLauncher(RtmpRelay(IngestHub(EmbeddedStream(tmp_path / "x.db")), "127.0.0.1", 0), "h")
    )
    api = Coordinator(ctx)
    sid = start(api)["session_id"]
    ctx.transcripts.commit_window(
        WindowRecord(sid, 0, 0, 16000),
        [TranscriptSegment(sid, 0, 0, 0, 1, "Hello.", "S1")],
        SessionProgress(sid, 1, 16000),
    )
    ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.PROCESSING)
    result = default_steps(ctx.sessions, ctx.transcripts).run(sid, timeout=0.5, poll=0.1)
    assert result["state"] == "partial" and "timed out waiting for audio: processed 1.0 s" in result["reason"]
    assert ctx.transcripts.get_notes(sid) is not None  # notes from what exists

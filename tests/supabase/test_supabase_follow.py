"""flowbot.follow: the renderer, follow_local against an SSE server, follow_supabase against
the Realtime protocol double fed by real PostgreSQL changes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from flowbot.follow import FollowError, TranscriptRenderer, follow_local, follow_supabase
from stores.base import Session, SessionProgress
from stores.supabase import SupabaseMeetingStatus, SupabaseTranscriptStore
from testkit.supabase_stack import SupabaseStack
from tests.supabase.fake_realtime import FakeRealtime

NewSession = Callable[..., Session]


def seg(
    win: int, idx: int, text: str, *, final: bool = True, speaker: str = "S1", sid: str = "s1"
) -> TranscriptSegment:
    return TranscriptSegment(
        sid,
        win,
        idx,
        win * 30.0 + idx * 3.0,
        win * 30.0 + idx * 3.0 + 2.5,
        text,
        speaker=speaker,
        is_final=final,
        stable=final,
    )


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: handles CSI n F (up n, col 0), CSI J, SGR."""
    lines: list[str] = [""]
    row = 0
    for token in re.split(r"(\x1b\[\d*[A-Za-z]|\n)", raw):
        if not token:
            continue
        if token == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        elif token.startswith("\x1b["):
            n = int(token[2:-1] or 1)
            if token.endswith("F"):
                row = max(0, row - n)
            elif token.endswith("J"):
                del lines[row + 1 :]
                lines[row] = ""
        else:
            lines[row] += token
    return [x for x in lines if x]


# --- renderer -----------------------------------------------------------------


def test_plain_output_marks_interim_and_prints_finals_once() -> None:
    out = io.StringIO()
    r = TranscriptRenderer(out, tty=False)
    r.window(0, 1, False, [seg(0, 0, "hello wor", final=False)], {"S1": "Ann"})
    r.window(0, 2, False, [seg(0, 0, "hello world", final=False), seg(0, 1, "and", final=False)])
    r.window(0, 2, False, [seg(0, 0, "replayed", final=False)])  # not newer: ignored
    r.window(0, 3, True, [seg(0, 0, "Hello world.")])
    r.window(0, 4, True, [seg(0, 0, "Hello world.")])  # replayed final: not printed again
    r.window(1, 5, True, [seg(1, 0, "Second.", speaker="S2")])
    r.show_state({"state": "completed"})
    r.show_notes({"summary": "Greetings.", "action_items": ["reply"]})
    assert out.getvalue().splitlines() == [
        "~ [00:00] Ann: hello wor (interim)",
        "~ [00:00] Ann: hello world (interim)",
        "~ [00:03] Ann: and (interim)",
        "[00:00] Ann: Hello world.",
        "[00:30] S2: Second.",
        "-- session completed --",
        "-- notes --",
        "summary: Greetings.",
        "action_items:",
        "  - reply",
    ]


def test_changed_final_is_marked_revised() -> None:
    out = io.StringIO()
    r = TranscriptRenderer(out, tty=False)
    r.window(0, 1, True, [seg(0, 0, "first take")])
    r.window(0, 2, True, [seg(0, 0, "second take")])
    assert out.getvalue().splitlines() == ["[00:00] S1: first take", "[00:00] S1: second take (revised)"]


def test_tty_rewrites_interim_in_place() -> None:
    out = io.StringIO()
    r = TranscriptRenderer(out, tty=True)
    r.window(0, 1, True, [seg(0, 0, "Done before.")])
    r.window(1, 2, False, [seg(1, 0, "typing", final=False), seg(1, 1, "more", final=False)])
    assert screen(out.getvalue()) == ["[00:00] S1: Done before.", "[00:30] S1: typing", "[00:33] S1: more"]
    assert "\x1b[2m[00:30] S1: typing" in out.getvalue()  # interim is drawn dimmed
    r.window(1, 3, False, [seg(1, 0, "typing this", final=False)])
    assert screen(out.getvalue()) == ["[00:00] S1: Done before.", "[00:30] S1: typing this"]
    r.window(2, 4, False, [seg(2, 0, "next window", final=False)])
    r.window(1, 5, True, [seg(1, 0, "Typing this.")])
    assert screen(out.getvalue()) == ["[00:00] S1: Done before.", "[00:30] S1: Typing this.", "[01:00] S1: next window"]
    r.window(2, 6, True, [seg(2, 0, "Next window.")])
    assert screen(out.getvalue()) == [
        "[00:00] S1: Done before.",
        "[00:30] S1: Typing this.",
        "[01:00] S1: Next window.",
    ]
    assert out.getvalue().count("Typing this.") == 1  # final text written once


def test_realtime_segment_rows_merge_until_window_replaces() -> None:
    out = io.StringIO()
    r = TranscriptRenderer(out, tty=False)
    r.window(0, 1, False, [seg(0, i, f"interim {i}", final=False) for i in range(3)])
    r.segment(seg(0, 0, "Final zero."))
    r.segment(seg(0, 2, "late interim", final=False))  # stale interim after final: ignored
    r.window(0, 2, True, [seg(0, 0, "Final zero.")])
    lines = out.getvalue().splitlines()
    assert lines.count("[00:00] S1: Final zero.") == 1
    assert not any("late interim" in x for x in lines)


# --- follow_local against an SSE server -------------------------------------------------


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def window_event(win: int, rev: int, final: bool, texts: list[str]) -> dict[str, Any]:
    return {
        "window_index": win,
        "revision": rev,
        "is_final": final,
        "segments": [seg(win, i, t, final=final).to_dict() for i, t in enumerate(texts)],
        "speakers": {"S1": "Ann"},
    }


class FeedServer:
    """A small SSE server: first connection drops mid-stream, the next resumes after Last-Event-ID."""

    def __init__(self) -> None:
        self.last_event_ids: list[str | None] = []
        self.auth: list[str | None] = []
        events = [
            (1, sse("state", {"state": "live"})),
            (1, sse("window", window_event(0, 1, False, ["hel"]), 1)),
            (2, sse("window", window_event(0, 2, True, ["Hello."]), 2)),
            (3, sse("window", window_event(1, 3, True, ["World."]), 3)),
            (3, sse("state", {"state": "completed"})),
            (3, sse("notes", {"summary": "Said hello."})),
        ]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/sessions/s1/events":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                since = self.headers.get("last-event-id")
                outer.last_event_ids.append(since)
                outer.auth.append(self.headers.get("authorization"))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                first = len(outer.last_event_ids) == 1
                self.wfile.write(b": keep-alive\n\n")
                for rev, chunk in events:
                    if since is not None and chunk.startswith(b"id:") and rev <= int(since):
                        continue
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if first and b"id: 2" in chunk:
                        return  # connection drops after window 0 went final
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def feed() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


def test_follow_local_reconnects_and_ends_with_state(feed: FeedServer) -> None:
    out = io.StringIO()
    state = follow_local(feed.url, "s1", out, token="tok")
    assert state == "completed"
    assert feed.last_event_ids == [None, "2"]  # resumed after the last event seen
    assert feed.auth == ["Bearer tok", "Bearer tok"]
    assert out.getvalue().splitlines() == [
        "-- session live --",
        "~ [00:00] Ann: hel (interim)",
        "[00:00] Ann: Hello.",
        "[00:30] Ann: World.",
        "-- session completed --",
        "-- notes --",
        "summary: Said hello.",
    ]


def test_follow_local_unknown_session(feed: FeedServer) -> None:
    with pytest.raises(FollowError, match="HTTP 404"):
        follow_local(feed.url, "nope", io.StringIO())


def test_follow_local_server_down() -> None:
    from testkit.net import free_port

    with pytest.raises(FollowError, match="unavailable"):
        follow_local(f"http://127.0.0.1:{free_port()}", "s1", io.StringIO(), reconnects=1)


# --- follow_supabase through the Realtime double ----------------------------------------


@pytest.fixture()
def realtime(stack: SupabaseStack) -> Iterator[FakeRealtime]:
    fake = FakeRealtime(stack).start()
    yield fake
    fake.close()


def follower_settings(stack: SupabaseStack, token: str) -> Settings:
    return Settings.from_env(
        {}, store="supabase", supabase_url=stack.url, supabase_anon_key=stack.anon_key, supabase_access_token=token
    )


@pytest.mark.slow
def test_follow_supabase_live(
    stack: SupabaseStack,
    realtime: FakeRealtime,
    new_session: NewSession,
    meetings: SupabaseMeetingStatus,
) -> None:
    owner = str(uuid.uuid4())
    session = new_session(owner=owner)
    sid = session.session_id
    store = SupabaseTranscriptStore(stack.url, stack.service_key)
    # Already there before following: caught up on subscribe.
    store.commit_window(
        WindowRecord(sid, 0, 0, 480_000), [seg(0, 0, "Earlier.", sid=sid)], SessionProgress(sid, 1, 480_000)
    )
    out = io.StringIO()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["state"] = asyncio.run(
                follow_supabase(
                    follower_settings(stack, stack.user_token(owner)),
                    sid,
                    out,
                    renderer=TranscriptRenderer(out, tty=False),
                    catch_up_seconds=30,
                )
            )
        except BaseException as e:  # surfaced by the assertion below
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    realtime.wait_for(lambda rt: len(rt.subs) == 1)
    # The join carried the user's JWT (RLS is checked with it) and the session filters.
    join = realtime.joins[-1]
    assert jwt.decode(join["access_token"], options={"verify_signature": False})["sub"] == owner
    filters = {b.get("filter") for b in join["config"]["postgres_changes"]}
    assert filters == {f"session_id=eq.{sid}", f"id=eq.{sid}"}

    assert store.put_interim(sid, 1, [seg(1, 0, "live te", final=False, sid=sid)])
    realtime.wait_for(lambda rt: any("live te" in json.dumps(m) for m in rt.sent))
    store.rename_speaker(sid, "S1", "Ann")
    store.commit_window(
        WindowRecord(sid, 1, 480_000, 960_000), [seg(1, 0, "Live text.", sid=sid)], SessionProgress(sid, 2, 960_000)
    )
    meetings.update(session.meeting_id, "completed", {"summary": "It worked."}, session_id=sid)
    thread.join(30)
    assert not thread.is_alive(), out.getvalue()
    assert "error" not in result, result
    assert result["state"] == "completed"
    lines = out.getvalue().splitlines()
    assert lines[0] == "[00:00] S1: Earlier."
    assert "~ [00:30] S1: live te (interim)" in lines
    assert lines.count("[00:30] Ann: Live text.") == 1
    assert lines[-3:] == ["-- session completed --", "-- notes --", "summary: It worked."]
    # Changes really came through the Realtime protocol, not only the catch-up reads.
    tables = {m["payload"]["data"]["table"] for m in realtime.sent}
    assert {"transcript_segments", "transcript_windows", "sessions"} <= tables


@pytest.mark.slow
def test_follow_supabase_other_user_sees_nothing(
    stack: SupabaseStack, realtime: FakeRealtime, new_session: NewSession
) -> None:
    session = new_session()
    intruder = stack.user_token(str(uuid.uuid4()))
    with pytest.raises(FollowError, match=r"no session .* visible"):
        asyncio.run(follow_supabase(follower_settings(stack, intruder), session.session_id, io.StringIO()))
    assert realtime.joins  # it did subscribe; the catch-up read found nothing


def test_follow_supabase_needs_credentials() -> None:
    with pytest.raises(FollowError, match="FLOWBOT_SUPABASE_ACCESS_TOKEN"):
        asyncio.run(
            follow_supabase(
                Settings.from_env({}, supabase_url="http://127.0.0.1:1", supabase_anon_key="k"), "s", io.StringIO()
            )
        )

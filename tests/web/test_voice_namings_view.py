"""Speakers named by voice on the session's pages (issue 21 item 3): the owner sees it, viewers do not.

"The speaker is marked as named by voice, with its score, and the owner can
undo it." The owner's ``/info`` carries ``named_by_voice`` (name, score,
state); a view link gets the name like any rename, and never the score nor the
voice's id, on any route it reaches. The page itself is tried in headless
Chromium in tests/live/test_voice_naming_page.py.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.voices import Voice
from flowbot.serve import LiveService
from stores.base import SessionProgress, SessionState
from tests.test_web_front import TOKEN, port_of, request, settings_for

OWNER = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
DANA = tuple(float((i * 7) % 11) / 11.0 - 0.45 for i in range(192))
LEE = tuple(float((i * 5) % 13) / 13.0 - 0.5 for i in range(192))
#: Dana in this meeting: her voice and some noise (cosine similarity 0.9 and a bit).
DANA_TODAY = tuple(x + 0.2 * (((i * 3) % 5) / 5.0 - 0.4) for i, x in enumerate(DANA))


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LiveService]:
    service = LiveService(settings_for(tmp_path, api_token=TOKEN)).start()
    try:
        yield service
    finally:
        service.stop()


def api(service: LiveService, action: str, **fields: Any) -> dict[str, Any]:
    body = json.dumps({"action": action, **fields}).encode()
    status, _, payload = request(port_of(service), "POST", "/api", body, {**JSON, **OWNER})
    assert status == 200, payload
    return dict(json.loads(payload))


def named_meeting(service: LiveService, owner: str, *, name: bool = True) -> tuple[str, Voice]:
    """A session of ``owner`` whose S1 was named "Dana" by a remembered voice (S2 was not).

    ``name=False``: Dana's voice is remembered and S1 speaks, but nobody has named it yet.
    """
    sid = api(service, "start_session", meeting_id="m", user_id=owner, topic="weekly")["session_id"]
    voices = service.ctx.voices
    assert voices is not None
    now = time.time()
    dana = Voice(str(uuid.uuid4()), owner, "Dana", voices.model, DANA, 30.0, now, now)
    voices.library.save_voice(dana)
    state = {
        "version": 1,
        "next": 3,
        "last": None,
        "speakers": [
            {"label": "S1", "centroid": list(DANA_TODAY), "seconds": 9.0},
            {"label": "S2", "centroid": list(LEE), "seconds": 9.0},
        ],
    }
    segs = [
        TranscriptSegment(sid, 0, 0, 0.0, 2.0, "Good morning.", "S1"),
        TranscriptSegment(sid, 0, 1, 2.5, 4.0, "Morning Dana.", "S2"),
    ]
    service.ctx.transcripts.commit_window(
        WindowRecord(sid, 0, 0, 64000), segs, SessionProgress(sid, 1, 64000, None, state)
    )
    if name:
        named = voices.name_session(service.ctx.sessions.get(sid))
        assert [(n.label, n.name) for n in named] == [("S1", "Dana")]
    return sid, dana


def test_the_owners_info_says_who_was_named_by_voice_with_the_score(svc: LiveService) -> None:
    sid, _ = named_meeting(svc, "owner-1")
    status, _, body = request(port_of(svc), "GET", f"/sessions/{sid}/info", headers=OWNER)
    assert status == 200
    info = json.loads(body)
    assert info["speakers"] == {"S1": "Dana", "S2": "S2"}
    score = svc.ctx.voices.library.namings(sid)["S1"].score  # type: ignore[union-attr]
    assert 0.8 < score < 0.99
    assert info["named_by_voice"] == {"S1": {"name": "Dana", "score": round(score, 2), "state": "named"}}

    # Undone through the API the page calls: the label is back, and /info says so.
    undone = api(svc, "undo_voice_name", session_id=sid, speaker="S1")
    assert undone["speakers"]["S1"] == "S1"
    info = json.loads(request(port_of(svc), "GET", f"/sessions/{sid}/info", headers=OWNER)[2])
    assert info["speakers"]["S1"] == "S1" and info["named_by_voice"]["S1"]["state"] == "undone"


def test_a_view_link_sees_the_name_but_never_the_score_or_the_voice(svc: LiveService) -> None:
    sid, dana = named_meeting(svc, "owner-2")
    naming = svc.ctx.voices.library.namings(sid)["S1"]  # type: ignore[union-attr]
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
    svc.ctx.transcripts.put_notes(sid, {"summary": ["Dana opened."], "speakers": {"S1": "Dana", "S2": "S2"}})
    port = port_of(svc)
    view = svc.web.guard.view_token(sid)
    paths = [
        f"/sessions/{sid}/info",
        f"/sessions/{sid}/events",
        *(f"/sessions/{sid}/transcript?format={f}" for f in ("json", "text", "srt", "vtt", "rttm")),
    ]
    for path in paths:
        status, _, body = request(port, "GET", f"{path}{'&' if '?' in path else '?'}view={view}")
        assert status == 200, (path, body[:200])
        text = body.decode()
        assert dana.voice_id not in text, f"{path} shows a viewer the voice's id"
        assert "named_by_voice" not in text and "by voice" not in text, path
        assert str(round(naming.score, 2)) not in text and str(round(naming.score, 4)) not in text, path
    info = json.loads(request(port, "GET", f"/sessions/{sid}/info?view={view}")[2])
    assert info["can_edit"] is False and info["speakers"] == {"S1": "Dana", "S2": "S2"}
    assert set(info) == {"session", "revisions", "speakers", "can_edit", "share_path", "formats"}


def test_flowbot_follow_tells_the_owner_who_was_named_by_voice_and_undone(svc: LiveService) -> None:
    from flowbot.follow import TranscriptRenderer, follow_local

    sid, _ = named_meeting(svc, "owner-3", name=False)
    voices = svc.ctx.voices
    assert voices is not None
    outs = {who: io.StringIO() for who in ("owner", "viewer")}
    tokens = {"owner": TOKEN, "viewer": svc.web.guard.view_token(sid)}
    threads = [
        threading.Thread(
            target=follow_local,
            args=(svc.url, sid, outs[who]),
            kwargs={"token": tokens[who], "renderer": TranscriptRenderer(outs[who], tty=False)},
            daemon=True,
        )
        for who in outs
    ]
    for t in threads:
        t.start()
    named = voices.name_session(svc.ctx.sessions.get(sid))
    line = f"-- S1 named Dana by voice (score {named[0].score:.2f}); undo: flowbot voices undo {sid} S1 --"
    until(lambda: line in outs["owner"].getvalue(), outs["owner"])
    api(svc, "undo_voice_name", session_id=sid, speaker="S1")
    undone = f"-- S1: the name Dana given by voice (score {named[0].score:.2f}) was undone --"
    until(lambda: undone in outs["owner"].getvalue(), outs["owner"])
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert outs["owner"].getvalue().count(line) == 1
    # A view token follows the transcript but is never told what a voice did.
    assert "Good morning." in outs["viewer"].getvalue()
    assert "by voice" not in outs["viewer"].getvalue()


def until(condition: Callable[[], bool], out: io.StringIO, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)


def test_follow_shows_each_naming_change_once_and_never_an_older_one_after_a_newer() -> None:
    from flowbot.follow import TranscriptRenderer

    out = io.StringIO()
    view = TranscriptRenderer(out, tty=False)
    named = {"name": "Dana", "score": 0.934, "state": "named", "at": "2026-12-07T10:00:00+00:00"}
    undone = {**named, "state": "undone", "at": "2026-12-07T10:00:05.5+00:00"}
    view.show_namings("s1", {"S2": named})
    view.show_namings("s1", {"S2": named})  # the same change from another source
    view.show_namings("s1", {"S2": undone})
    view.show_namings("s1", {"S2": named})  # a late Realtime message of the first change
    assert out.getvalue().splitlines() == [
        "-- S2 named Dana by voice (score 0.93); undo: flowbot voices undo s1 S2 --",
        "-- S2: the name Dana given by voice (score 0.93) was undone --",
    ]

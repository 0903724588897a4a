"""Issue 21: the end-of-meeting speaker relabel reaches viewers of the page and `flowbot follow`.

A viewer that saw every window live (its Last-Event-ID is the newest revision before
the relabel) gets each relabelled window again, with its final labels, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.segments import SpeakerTurn, TranscriptSegment, WindowRecord, WindowSpeaker, Word
from control.notes import OfflineNotesGenerator
from control.workflow import WorkflowSteps
from flowbot.serve import LiveService
from stores.base import SessionProgress, SessionState
from tests.test_web_front import port_of, request, settings_for, start


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LiveService]:
    service = LiveService(settings_for(tmp_path)).start()
    try:
        yield service
    finally:
        service.stop()


def test_viewer_gets_relabelled_windows_once_the_meeting_ends(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    store = svc.ctx.transcripts
    voice_a = tuple([1.0] + [0.0] * 7)
    voice_b = tuple([0.0, 1.0] + [0.0] * 6)

    def seg(win: int, idx: int, text: str, speaker: str) -> TranscriptSegment:
        t = win * 30.0 + idx * 5
        words = tuple(Word(t + i * 0.3, t + (i + 1) * 0.3, " " + w, 0.9, speaker) for i, w in enumerate(text.split()))
        return TranscriptSegment(sid, win, idx, t, t + 2, text, speaker, words)

    # Live: the telephone voice B came back in window 1 as a phantom S3.
    windows = [
        WindowRecord(
            sid,
            0,
            0,
            480_000,
            turns=(SpeakerTurn(0, 5, "S1"), SpeakerTurn(5, 10, "S2")),
            speakers=(WindowSpeaker("S1", 5.0, voice_a), WindowSpeaker("S2", 5.0, voice_b)),
        ),
        WindowRecord(
            sid,
            1,
            480_000,
            960_000,
            turns=(SpeakerTurn(30, 35, "S1"), SpeakerTurn(35, 40, "S3")),
            speakers=(WindowSpeaker("S1", 5.0, voice_a), WindowSpeaker("S3", 5.0, voice_b)),
        ),
    ]
    segs = {
        0: [seg(0, 0, "opening words", "S1"), seg(0, 1, "hello there", "S2")],
        1: [seg(1, 0, "more from one", "S1"), seg(1, 1, "back again", "S3")],
    }
    for w in windows:
        end = 960_000 if w.window_index == 1 else None
        store.commit_window(w, segs[w.window_index], SessionProgress(sid, w.window_index + 1, w.end_sample, end))
    seen = max(c.revision for c in store.changes_since(sid, 0))

    WorkflowSteps(svc.ctx.sessions, store, OfflineNotesGenerator()).reconcile_speakers(sid)
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)

    status, _, body = request(port_of(svc), "GET", f"/sessions/{sid}/events", headers={"Last-Event-ID": str(seen)})
    assert status == 200
    events = body.decode().split("\n\n")
    window_events = [json.loads(e.split("data: ", 1)[1]) for e in events if "event: window" in e]
    assert [e["window_index"] for e in window_events] == [1], events
    assert {s["speaker"] for s in window_events[0]["segments"]} == {"S1", "S2"}
    assert "back again" in json.dumps(window_events[0])

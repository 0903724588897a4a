"""control.sessions: the one transition table, its verbs, and the session report."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord, WindowStatus
from control import sessions
from control.launch import LaunchResult
from control.recovery import RECOVERY
from control.sessions import TERMINAL, TRANSITIONS, Progress, SessionReport, Verb
from stores.base import Session, SessionProgress, SessionState, StateConflict
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore

ROOT = Path(__file__).resolve().parents[1]


def _session(store: SqliteSessionStore, state: SessionState) -> str:
    sid = str(uuid.uuid4())
    store.create(Session(sid, "m", "u", "t", stream_key="k" + sid, state=state))
    return sid


@pytest.mark.parametrize("verb", list(Verb))
@pytest.mark.parametrize("state", list(SessionState))
def test_each_verb_applies_exactly_in_the_states_its_row_names(tmp_path: Path, verb: Verb, state: SessionState) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    sid = _session(store, state)
    rule = TRANSITIONS[verb]
    fields = {"reason": "r"} if verb in (Verb.FAIL, Verb.FAIL_LAUNCH, Verb.COMPLETE_PARTIALLY) else {}
    if state in rule.sources:
        after = sessions.apply(store, sid, verb, **fields)
        assert after.state == (rule.target or state)
        assert store.get(sid).state == after.state
    else:
        with pytest.raises(StateConflict):
            sessions.apply(store, sid, verb, **fields)
        assert store.get(sid).state == state  # a refused verb changes nothing


def test_terminal_states_are_the_final_ones_and_recovery_covers_the_rest() -> None:
    assert {SessionState.COMPLETED, SessionState.PARTIAL, SessionState.FAILED} == TERMINAL
    assert set(RECOVERY) == set(SessionState) - TERMINAL


def test_the_life_cycle_through_the_verbs(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    sid = _session(store, SessionState.STARTING)
    launched = sessions.record_launch(store, sid, LaunchResult("rtmp://h/live/k", "embedded:x"))
    assert launched.state == SessionState.STARTING and launched.rtmp_url == "rtmp://h/live/k"
    assert sessions.go_live(store, sid).state == SessionState.LIVE
    ended = sessions.end(store, sid)
    assert ended.state == SessionState.ENDING and ended.ended_at is not None
    assert sessions.start_processing(store, sid).state == SessionState.PROCESSING
    done = sessions.complete_partially(store, sid, "1 window(s) failed")
    assert done.state == SessionState.PARTIAL and done.reason == "1 window(s) failed"
    with pytest.raises(StateConflict):
        sessions.fail(store, sid, "late")


def test_recording_the_launch_never_takes_a_live_session_back_to_starting(tmp_path: Path) -> None:
    """The publisher may already be sending when the launcher returns."""
    store = SqliteSessionStore(tmp_path / "s.db")
    sid = _session(store, SessionState.STARTING)
    sessions.go_live(store, sid)
    after = sessions.record_launch(store, sid, LaunchResult("rtmp://h/live/k", "embedded:x"))
    assert after.state == SessionState.LIVE and after.producer_ref == "embedded:x"


def test_the_report_counts_windows_failures_and_the_expected_total(tmp_path: Path) -> None:
    transcripts = SqliteTranscriptStore(tmp_path / "t.db")
    sid = "s1"
    seg = TranscriptSegment(sid, 0, 0, 0.5, 2.0, "Hello there.", "S1")
    transcripts.commit_window(WindowRecord(sid, 0, 0, 160_000), [seg], SessionProgress(sid, 1, 160_000))
    transcripts.commit_window(
        WindowRecord(sid, 1, 160_000, 320_000, WindowStatus.FAILED, "RuntimeError: boom"),
        [],
        SessionProgress(sid, 2, 320_000),
    )
    open_stream = Progress.read(transcripts, sid, window_seconds=10.0)
    assert (open_stream.windows_done, open_stream.windows_failed) == (1, 1)
    assert not open_stream.stream_ended and open_stream.windows_expected is None
    transcripts.save_progress(SessionProgress(sid, 2, 320_000, 800_000))
    ended = Progress.read(transcripts, sid, window_seconds=10.0)
    assert ended.stream_ended and not ended.stream_done and ended.windows_expected == 5
    assert ended.processed_seconds == 20.0
    assert ended.failures[0].to_dict() == {"window_index": 1, "start": 10.0, "end": 20.0, "error": "RuntimeError: boom"}
    session = Session(sid, "m", "u", "t", stream_key="k")
    report = SessionReport.read(session, transcripts, window_seconds=10.0).to_dict()
    assert report["state"] == "starting" and report["speakers"] == {"S1": "S1"} and report["notes"] is None
    assert report["progress"]["windows_expected"] == 5 and report["progress"]["failures"][0]["window_index"] == 1


def test_no_state_change_bypasses_the_verbs() -> None:
    """Outside the stores and control.sessions, nothing calls a store's transition directly."""
    allowed = {ROOT / "control" / "sessions.py"}
    offenders = []
    for package in ("contracts", "control", "flowbot", "processor", "producer", "streams"):
        for path in (ROOT / package).rglob("*.py"):
            if path not in allowed and re.search(r"\.transition\(", path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []

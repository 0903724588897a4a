"""SupabaseTranscriptStore against real PostgreSQL 15 + PostgREST 12 (through the gateway)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from contracts.notes import MeetingNotes
from contracts.segments import (
    SpeakerRelabel,
    SpeakerTurn,
    TranscriptSegment,
    WindowRecord,
    WindowSpeaker,
    WindowStatus,
    Word,
)
from stores.base import PermanentStoreError, Session, SessionProgress, WindowChange
from stores.sqlite import SqliteTranscriptStore
from stores.supabase import RetryPolicy, StoreUnavailableError, SupabaseTranscriptStore
from testkit.supabase_stack import DropReply, SupabaseStack, make_jwt

NewSession = Callable[..., Session]


def seg(
    sid: str, win: int, idx: int, text: str, *, final: bool = True, speaker: str | None = "SPEAKER_00"
) -> TranscriptSegment:
    start = win * 30.0 + idx * 2.0
    words = tuple(Word(start + 0.3 * i, start + 0.3 * i + 0.25, w, 0.9, speaker) for i, w in enumerate(text.split()))
    return TranscriptSegment(
        session_id=sid,
        window_index=win,
        segment_index=idx,
        start=start,
        end=start + 1.5,
        text=text,
        speaker=speaker,
        words=words,
        is_final=final,
        stable=final,
        avg_logprob=-0.25,
        audio_uri=f"file:///a/{sid}/{win}.flac",
    )


def window(sid: str, win: int, *, status: WindowStatus = WindowStatus.DONE, error: str | None = None) -> WindowRecord:
    return WindowRecord(sid, win, win * 480_000, (win + 1) * 480_000, status, error, f"file:///a/{sid}/{win}.flac")


def progress(sid: str, win: int, **kw: Any) -> SessionProgress:
    return SessionProgress(
        sid, win + 1, (win + 1) * 480_000, speaker_state={"centroids": {"SPEAKER_00": [0.1, 0.2]}}, **kw
    )


@pytest.fixture()
def store(stack: SupabaseStack, fast_retry: RetryPolicy) -> SupabaseTranscriptStore:
    return SupabaseTranscriptStore(stack.url, stack.service_key, retry=fast_retry)


@pytest.fixture()
def hooks(stack: SupabaseStack) -> Iterator[SupabaseStack]:
    """The stack with gateway hooks reset, and PostgREST running, after the test."""
    yield stack
    stack.gateway.before_forward = None
    stack.gateway.after_forward = None
    assert stack.rest is not None
    if stack.rest._proc is None or stack.rest._proc.poll() is not None:
        stack.restart_rest()


def segment_rows(stack: SupabaseStack, sid: str) -> list[list[str]]:
    """Every column but the timestamps, straight from Postgres."""
    return stack.pg.query(
        'SELECT window_index, segment_index, start, "end", speaker, text, words::text, '
        f"is_final, stable, avg_logprob, audio_uri FROM transcript_segments "
        f"WHERE session_id = '{sid}' ORDER BY window_index, segment_index"
    )


def test_window_speaker_turns_round_trip_like_sqlite(
    store: SupabaseTranscriptStore, new_session: NewSession, tmp_path: Path
) -> None:
    sid = new_session().session_id
    turns = (SpeakerTurn(6.73, 7.17, "S1"), SpeakerTurn(7.0, 9.92, "S2"))
    win = replace(window(sid, 0), turns=turns)
    store.commit_window(win, [seg(sid, 0, 0, "hello")], progress(sid, 0))
    assert store.windows(sid) == [win]
    ref = SqliteTranscriptStore(tmp_path / "ref.db")
    ref.commit_window(win, [seg(sid, 0, 0, "hello")], progress(sid, 0))
    assert ref.windows(sid) == store.windows(sid)


def test_commit_round_trip(store: SupabaseTranscriptStore, new_session: NewSession) -> None:
    s = new_session()
    sid = s.session_id
    segs = [seg(sid, 0, 0, "hello there"), seg(sid, 0, 1, "general kenobi", speaker="SPEAKER_01")]
    store.commit_window(window(sid, 0), segs, progress(sid, 0))
    assert store.segments(sid) == segs
    assert store.windows(sid) == [window(sid, 0)]
    assert store.load_progress(sid) == progress(sid, 0)
    assert store.load_progress("never-committed") is None
    assert store.speakers(sid) == {"SPEAKER_00": "SPEAKER_00", "SPEAKER_01": "SPEAKER_01"}
    store.rename_speaker(sid, "SPEAKER_01", "Obi-Wan")
    assert store.speakers(sid)["SPEAKER_01"] == "Obi-Wan"
    notes = json.loads((Path(__file__).resolve().parents[2] / "contracts" / "golden" / "notes_v2.json").read_text())
    store.put_notes(sid, notes)  # the notes contract v2, as the workflow writes it
    assert store.get_notes(sid) == notes
    assert MeetingNotes.from_dict(store.get_notes(sid) or {}).to_dict() == notes
    assert store.get_notes("nope") is None


def test_replay_window_gives_same_rows(
    store: SupabaseTranscriptStore, stack: SupabaseStack, new_session: NewSession
) -> None:
    sid = new_session().session_id
    segs = [seg(sid, 2, i, f"word {i}") for i in range(4)]
    store.commit_window(window(sid, 2), segs, progress(sid, 2))
    before = segment_rows(stack, sid)
    rev_before = store.changes_since(sid, 0)[0].revision
    store.commit_window(window(sid, 2), segs, progress(sid, 2))
    assert segment_rows(stack, sid) == before
    assert len(before) == 4
    changes = store.changes_since(sid, 0)
    assert len(changes) == 1 and changes[0].revision > rev_before  # feeds re-send it
    assert store.windows(sid) == [window(sid, 2)]


def test_final_replaces_interim(store: SupabaseTranscriptStore, stack: SupabaseStack, new_session: NewSession) -> None:
    sid = new_session().session_id
    interim = [seg(sid, 0, i, f"maybe {i}", final=False) for i in range(3)]
    assert store.put_interim(sid, 0, interim) is True
    assert store.segments(sid) == []  # interim is never shown as final
    assert [s.text for s in store.segments(sid, include_interim=True)] == ["maybe 0", "maybe 1", "maybe 2"]
    assert store.windows(sid) == []  # an open window is not committed
    (change,) = store.changes_since(sid, 0)
    assert change.is_final is False and len(change.segments) == 3

    final = [seg(sid, 0, 0, "surely zero"), seg(sid, 0, 1, "surely one")]
    store.commit_window(window(sid, 0), final, progress(sid, 0))
    assert store.segments(sid, include_interim=True) == final  # interim row 2 is gone
    (change,) = store.changes_since(sid, change.revision)
    assert change.is_final is True and change.segments == tuple(final)

    # A late interim pass must not overwrite the final window.
    assert store.put_interim(sid, 0, [seg(sid, 0, 0, "late", final=False)]) is False
    assert store.segments(sid, include_interim=True) == final
    assert store.changes_since(sid, change.revision) == []


def test_same_operations_same_results_as_sqlite(
    store: SupabaseTranscriptStore, new_session: NewSession, tmp_path: Path
) -> None:
    """stores/sqlite.py is the reference: every read must match after the same writes."""
    sid = new_session().session_id
    ref = SqliteTranscriptStore(tmp_path / "ref.db")
    done2 = progress(sid, 2, ended_sample=3 * 480_000)
    w2 = [seg(sid, 2, 0, "x", speaker="B"), seg(sid, 2, 1, "y", speaker=None)]
    ops: list[Callable[[Any], object]] = [
        lambda st: st.put_interim(sid, 0, [seg(sid, 0, 0, "a b", final=False)]),
        lambda st: st.put_interim(sid, 0, [seg(sid, 0, i, "c", final=False) for i in range(2)]),
        lambda st: st.commit_window(window(sid, 0), [seg(sid, 0, 0, "final zero")], progress(sid, 0)),
        lambda st: st.put_interim(sid, 1, [seg(sid, 1, 0, "next", final=False)]),
        lambda st: st.commit_window(
            window(sid, 1, status=WindowStatus.FAILED, error="asr crashed"), [], progress(sid, 1)
        ),
        lambda st: st.commit_window(replace(window(sid, 2), dropped_segments=3), w2, done2),
        lambda st: st.rename_speaker(sid, "C", "Carol"),
        lambda st: st.save_progress(replace(done2, speaker_state={"n": 3})),
        lambda st: st.put_notes(sid, {"summary": "s", "n": [1, 2]}),
    ]
    results = []
    for op in ops:
        results.append((op(store), op(ref)))
    for mine, theirs in results:
        assert mine == theirs

    def shape(changes: list[WindowChange]) -> list[object]:  # revisions differ per store
        return [(c.window_index, c.is_final, c.segments) for c in changes]

    assert store.segments(sid) == ref.segments(sid)
    assert store.segments(sid, include_interim=True) == ref.segments(sid, include_interim=True)
    assert store.windows(sid) == ref.windows(sid)
    assert [w.dropped_segments for w in store.windows(sid)] == [0, 0, 3]  # the hallucination guard's count
    assert store.load_progress(sid) == ref.load_progress(sid)
    assert store.load_progress(sid).stream_done  # type: ignore[union-attr]
    assert store.speakers(sid) == ref.speakers(sid)
    assert store.get_notes(sid) == ref.get_notes(sid)
    assert shape(store.changes_since(sid, 0)) == shape(ref.changes_since(sid, 0))


def test_segments_page_past_postgrest_row_limit(store: SupabaseTranscriptStore, new_session: NewSession) -> None:
    sid = new_session().session_id
    for w in range(3):
        segs = [seg(sid, w, i, f"w{w} s{i}") for i in range(450)]
        store.commit_window(window(sid, w), segs, progress(sid, w))
    got = store.segments(sid)
    assert len(got) == 1350
    assert [(s.window_index, s.segment_index) for s in got] == sorted((w, i) for w in range(3) for i in range(450))


def test_unregistered_session_is_permanent_error(store: SupabaseTranscriptStore, stack: SupabaseStack) -> None:
    n = len(stack.gateway.requests)
    with pytest.raises(PermanentStoreError, match="not registered") as info:
        store.commit_window(window("ghost", 0), [seg("ghost", 0, 0, "boo")], progress("ghost", 0))
    assert info.value.code == "23503" and info.value.status == 409
    assert len(stack.gateway.requests) == n + 1  # refused once, not retried


def test_bad_input_refused_before_sending(
    store: SupabaseTranscriptStore, stack: SupabaseStack, new_session: NewSession
) -> None:
    sid = new_session().session_id
    n = len(stack.gateway.requests)
    with pytest.raises(PermanentStoreError, match="non-finite start"):
        store.commit_window(window(sid, 0), [replace(seg(sid, 0, 0, "x"), start=float("nan"))], progress(sid, 0))
    with pytest.raises(PermanentStoreError, match="not in window"):
        store.commit_window(window(sid, 0), [seg(sid, 1, 0, "x")], progress(sid, 0))
    assert len(stack.gateway.requests) == n
    assert store.windows(sid) == []


def test_wrong_key_is_permanent_error(stack: SupabaseStack, fast_retry: RetryPolicy) -> None:
    forged = make_jwt("service_role", aud=None, secret="another-secret-of-at-least-32-chars!!")
    bad = SupabaseTranscriptStore(stack.url, forged, retry=fast_retry)
    with pytest.raises(PermanentStoreError, match="PGRST301") as info:
        bad.load_progress("x")
    assert info.value.status == 401


def _restart_later(stack: SupabaseStack, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        stack.restart_rest()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_postgrest_killed_before_commit_reaches_it(
    store: SupabaseTranscriptStore, hooks: SupabaseStack, new_session: NewSession
) -> None:
    stack = hooks
    sid = new_session().session_id
    killed: list[float] = []

    def kill_first_commit(method: str, path: str) -> None:
        if path.startswith("/rpc/flowbot_commit_window") and not killed:
            assert stack.rest is not None
            stack.rest.kill()
            killed.append(time.monotonic())
            _restart_later(stack, 1.0)

    stack.gateway.before_forward = kill_first_commit
    segs = [seg(sid, 0, i, f"t{i}") for i in range(5)]
    store.commit_window(window(sid, 0), segs, progress(sid, 0))
    assert killed
    statuses = [st for m, p, st in stack.gateway.outcomes if p.startswith("/rpc/flowbot_commit")]
    assert 502 in statuses  # it really was refused at least once, then retried
    assert store.segments(sid) == segs
    assert store.windows(sid) == [window(sid, 0)]
    assert store.load_progress(sid) == progress(sid, 0)


@pytest.mark.slow
def test_postgrest_killed_after_commit_before_reply(
    store: SupabaseTranscriptStore, hooks: SupabaseStack, new_session: NewSession
) -> None:
    """The worst case: the window landed but the reply was lost; the retry must not duplicate."""
    stack = hooks
    sid = new_session().session_id
    store.put_interim(sid, 0, [seg(sid, 0, i, "interim", final=False) for i in range(6)])
    dropped: list[bool] = []

    def kill_after_commit(method: str, path: str) -> None:
        if path.startswith("/rpc/flowbot_commit_window") and not dropped:
            dropped.append(True)
            assert stack.rest is not None
            stack.rest.kill()
            _restart_later(stack, 1.0)
            raise DropReply

    stack.gateway.after_forward = kill_after_commit
    segs = [seg(sid, 0, i, f"final {i}") for i in range(3)]
    store.commit_window(window(sid, 0), segs, progress(sid, 0))
    assert dropped
    rows = stack.pg.query(
        f"SELECT count(*), count(*) FILTER (WHERE is_final) FROM transcript_segments WHERE session_id = '{sid}'"
    )
    assert rows == [["3", "3"]]
    assert stack.pg.query(f"SELECT count(*) FROM transcript_windows WHERE session_id = '{sid}'") == [["1"]]
    assert store.segments(sid, include_interim=True) == segs


@pytest.mark.slow
def test_gives_up_with_unavailable_error(stack: SupabaseStack, hooks: SupabaseStack, new_session: NewSession) -> None:
    sid = new_session().session_id
    impatient = SupabaseTranscriptStore(
        stack.url,
        stack.service_key,
        retry=RetryPolicy(attempts=50, base_delay=0.05, max_delay=0.2, deadline_s=1.0),
    )
    assert stack.rest is not None
    stack.rest.kill()
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="gave up") as info:
        impatient.commit_window(window(sid, 0), [seg(sid, 0, 0, "x")], progress(sid, 0))
    assert time.monotonic() - t0 < 3
    assert info.value.status == 502
    stack.restart_rest()
    assert impatient.windows(sid) == []  # nothing half-written


def test_speaker_relabel_applies_once_like_sqlite(
    store: SupabaseTranscriptStore, new_session: NewSession, tmp_path: Path
) -> None:
    """Issue 21: window speakers' voices are kept; the end-of-meeting relabel changes rows,
    word speakers, window turns and speakers and names in one transaction, once."""
    sid = new_session().session_id
    ref = SqliteTranscriptStore(tmp_path / "ref.db")
    voice = tuple(round(0.1 * i, 6) for i in range(8))
    w0 = replace(
        window(sid, 0),
        turns=(SpeakerTurn(0.0, 5.0, "S1"), SpeakerTurn(5.0, 9.0, "S2")),
        speakers=(WindowSpeaker("S1", 5.0, voice), WindowSpeaker("S2", 4.0, None)),
    )
    w1 = replace(
        window(sid, 1),
        turns=(SpeakerTurn(30.0, 36.0, "S3"),),
        speakers=(WindowSpeaker("S3", 6.0, voice),),
    )
    relabel = SpeakerRelabel({1: {"S3": "S1"}}, ("S1", "S2", "S3"), ("S1", "S2"), 7.0)
    for st in (store, ref):
        st.commit_window(
            w0, [seg(sid, 0, 0, "hi there", speaker="S1"), seg(sid, 0, 1, "yo", speaker="S2")], progress(sid, 0)
        )
        st.commit_window(w1, [seg(sid, 1, 0, "me again", speaker="S3")], progress(sid, 1))
        st.rename_speaker(sid, "S3", "Sheila")
    assert store.windows(sid) == ref.windows(sid) == [w0, w1]
    revision = max(c.revision for c in store.changes_since(sid, 0))

    assert store.speaker_relabel(sid) is None
    assert store.relabel_speakers(sid, relabel) and ref.relabel_speakers(sid, relabel)
    assert not store.relabel_speakers(sid, relabel)
    assert store.speaker_relabel(sid) == ref.speaker_relabel(sid) == relabel
    assert store.segments(sid) == ref.segments(sid)
    assert [s.speaker for s in store.segments(sid)] == ["S1", "S2", "S1"]
    assert {w.speaker for w in store.segments(sid)[2].words} == {"S1"}
    assert store.windows(sid) == ref.windows(sid)
    assert store.windows(sid)[1].turns == (SpeakerTurn(30.0, 36.0, "S1"),)
    assert store.speakers(sid) == ref.speakers(sid) == {"S1": "Sheila", "S2": "S2"}
    assert [c.window_index for c in store.changes_since(sid, revision)] == [1]

"""End-of-session speaker reconciliation (issue 21 item 2): one global clustering of the
session's window speakers, applied to the stored rows once, in one transaction.

Synthetic voices (random unit vectors, window embeddings 0.1-0.2 cosine away from
their voice) pin the logic; tests/realspeech/test_speakers_real.py measures it on
real recordings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.segments import (
    SpeakerRelabel,
    SpeakerTurn,
    TranscriptSegment,
    WindowRecord,
    WindowSpeaker,
    Word,
)
from control.notes import OfflineNotesGenerator
from control.sessions import SessionReport
from control.speakers import ReconcileParams, average_linkage, reconcile
from control.workflow import WorkflowSteps
from stores.base import Session, SessionProgress, SessionState
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore

DIM = 192
SR = 16_000


def _voices(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [v / np.linalg.norm(v) for v in rng.normal(size=(n, DIM))]


def _noisy(v: np.ndarray, rng: np.random.Generator, scale: float = 0.04) -> tuple[float, ...]:
    u = v + rng.normal(scale=scale, size=v.shape)
    return tuple(float(x) for x in u / np.linalg.norm(u))


def _window(index: int, speakers: list[tuple[str, float, tuple[float, ...] | None]]) -> WindowRecord:
    start = index * 30 * SR
    turns, t = [], index * 30.0
    for label, seconds, _ in speakers:
        turns.append(SpeakerTurn(t, t + seconds, label))
        t += seconds
    return WindowRecord(
        "s1",
        index,
        start,
        start + 30 * SR,
        turns=tuple(turns),
        speakers=tuple(WindowSpeaker(label, seconds, emb) for label, seconds, emb in speakers),
    )


def test_a_voice_split_live_into_two_labels_becomes_one() -> None:
    """The issue's phantom: one telephone voice founded S3 in a later window; the cast has two speakers."""
    a, b = _voices(2)
    rng = np.random.default_rng(1)
    windows = [
        _window(0, [("S1", 12.0, _noisy(a, rng)), ("S2", 14.0, _noisy(b, rng))]),
        _window(1, [("S1", 9.0, _noisy(a, rng)), ("S3", 6.0, _noisy(b, rng)), ("S2", 8.0, _noisy(b, rng))]),
        _window(2, [("S3", 5.0, _noisy(b, rng)), ("S1", 15.0, _noisy(a, rng))]),
    ]
    relabel = reconcile(windows, ReconcileParams(), now=1.0)
    assert relabel.before == ("S1", "S2", "S3")
    assert relabel.after == ("S1", "S2")
    assert relabel.windows == {1: {"S3": "S2"}, 2: {"S3": "S2"}}


def test_a_meeting_the_registry_got_right_keeps_every_label() -> None:
    voices = _voices(4, seed=3)
    rng = np.random.default_rng(4)
    windows = [
        _window(w, [(f"S{(w + k) % 4 + 1}", 10.0 + k, _noisy(voices[(w + k) % 4], rng)) for k in range(2)])
        for w in range(12)
    ]
    relabel = reconcile(windows)
    assert not relabel.changed
    assert relabel.before == relabel.after == ("S1", "S2", "S3", "S4")


def test_two_live_labels_of_one_voice_merge_under_the_label_with_most_speech() -> None:
    (a,) = _voices(1, seed=5)
    rng = np.random.default_rng(6)
    windows = [_window(0, [("S2", 3.0, _noisy(a, rng))]), _window(1, [("S1", 20.0, _noisy(a, rng))])]
    assert reconcile(windows).windows == {0: {"S2": "S1"}}


def test_short_or_unembedded_window_speakers_join_a_cluster_and_found_none() -> None:
    a, b, c = _voices(3, seed=7)
    rng = np.random.default_rng(8)
    windows = [
        _window(0, [("S1", 12.0, _noisy(a, rng)), ("S2", 12.0, _noisy(b, rng))]),
        # 0.8 s of a third voice: too little to trust; it joins the closest cluster.
        _window(1, [("S1", 12.0, _noisy(a, rng)), ("S3", 0.8, _noisy(c, rng))]),
        # No usable embedding: it stays with the cluster its live label mostly is.
        _window(2, [("S2", 1.5, None), ("S1", 10.0, _noisy(a, rng))]),
    ]
    relabel = reconcile(windows, ReconcileParams(min_seconds=2.0))
    assert relabel.after == ("S1", "S2")
    assert relabel.windows[1]["S3"] in {"S1", "S2"}
    assert 2 not in relabel.windows


def test_average_linkage_stops_at_the_threshold() -> None:
    a, b = _voices(2, seed=9)
    rng = np.random.default_rng(10)
    emb = np.stack([np.asarray(_noisy(v, rng)) for v in (a, a, b, b, a)])
    assert average_linkage(emb, np.ones(5), 0.5) == [0, 0, 1, 1, 0]
    assert average_linkage(emb, np.ones(5), 1e-6) == [0, 1, 2, 3, 4]
    assert average_linkage(emb, np.ones(5), 2.1) == [0] * 5


def test_relabel_record_round_trips_and_carries_names() -> None:
    relabel = SpeakerRelabel({1: {"S3": "S2"}, 4: {"S3": "S2", "S1": "S4"}}, ("S1", "S2", "S3"), ("S2", "S4"), 5.0)
    assert SpeakerRelabel.from_dict(relabel.to_dict()) == relabel
    assert relabel.to_dict()["windows_changed"] == 2
    # S3 was named: its name follows its speech to S2; the vanished S1's name moves to S4.
    assert relabel.carry_names({"S3": "Sheila", "S1": "Ann", "S2": "S2"}) == {"S2": "Sheila", "S4": "Ann"}
    # A final label keeps its own name.
    assert relabel.carry_names({"S2": "Bo", "S3": "Sheila"}) == {"S2": "Bo"}


def _segment(window: int, index: int, speaker: str) -> TranscriptSegment:
    t = window * 30.0 + index * 5
    return TranscriptSegment(
        "s1", window, index, t, t + 2, "hello there", speaker, (Word(t, t + 1, " hello", 0.9, speaker),)
    )


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SqliteSessionStore, SqliteTranscriptStore]:
    db = tmp_path / "flowbot.db"
    sessions, transcripts = SqliteSessionStore(db), SqliteTranscriptStore(db)
    sessions.create(Session("s1", "m1", "u1", "topic", "key", state=SessionState.PROCESSING))
    a, b = _voices(2, seed=11)
    rng = np.random.default_rng(12)
    windows = [
        _window(0, [("S1", 12.0, _noisy(a, rng)), ("S2", 14.0, _noisy(b, rng))]),
        _window(1, [("S1", 9.0, _noisy(a, rng)), ("S3", 6.0, _noisy(b, rng))]),
    ]
    segs = {0: [_segment(0, 0, "S1"), _segment(0, 1, "S2")], 1: [_segment(1, 0, "S1"), _segment(1, 1, "S3")]}
    for w in windows:
        progress = SessionProgress("s1", w.window_index + 1, w.end_sample, 60 * SR if w.window_index else None)
        transcripts.commit_window(w, segs[w.window_index], progress)
    return sessions, transcripts


def test_sqlite_relabels_rows_turns_and_names_once_and_feeds_see_it(
    stores: tuple[SqliteSessionStore, SqliteTranscriptStore],
) -> None:
    _, transcripts = stores
    transcripts.rename_speaker("s1", "S3", "Sheila")
    revision = max(c.revision for c in transcripts.changes_since("s1", 0))
    stored = transcripts.windows("s1")
    assert [len(w.speakers) for w in stored] == [2, 2]
    assert stored[1].speakers[1].embedding is not None and len(stored[1].speakers[1].embedding) == DIM

    relabel = reconcile(stored)
    assert relabel.windows == {1: {"S3": "S2"}}
    assert transcripts.relabel_speakers("s1", relabel)
    assert not transcripts.relabel_speakers("s1", relabel), "a session is relabelled once"

    segments = transcripts.segments("s1")
    assert [s.speaker for s in segments] == ["S1", "S2", "S1", "S2"]
    assert {w.speaker for s in segments for w in s.words} == {"S1", "S2"}
    window = transcripts.windows("s1")[1]
    assert {t.speaker for t in window.turns} == {"S1", "S2"}
    assert [s.label for s in window.speakers] == ["S1", "S2"]
    assert transcripts.speakers("s1") == {"S1": "S1", "S2": "Sheila"}
    # Live viewers: only the changed window comes again, with its final labels.
    changes = transcripts.changes_since("s1", revision)
    assert [c.window_index for c in changes] == [1]
    assert {s.speaker for s in changes[0].segments} == {"S1", "S2"}
    assert transcripts.speaker_relabel("s1") == relabel


def test_workflow_reconciles_before_notes_and_get_session_reports_it(
    stores: tuple[SqliteSessionStore, SqliteTranscriptStore],
) -> None:
    sessions, transcripts = stores
    steps = WorkflowSteps(sessions, transcripts, OfflineNotesGenerator())
    steps.generate_notes("s1")
    assert transcripts.speakers("s1") == {"S1": "S1", "S2": "S2"}
    notes = transcripts.get_notes("s1") or {}
    assert "S3" not in str(notes)
    report = SessionReport.read(sessions.get("s1"), transcripts, window_seconds=30.0).to_dict()
    assert report["speakers_reconciled"]["before"] == ["S1", "S2", "S3"]
    assert report["speakers_reconciled"]["after"] == ["S1", "S2"]
    assert report["speakers_reconciled"]["windows"] == {"1": {"S3": "S2"}}
    # The step again (a Step Functions retry) changes nothing.
    assert steps.reconcile_speakers("s1")["speakers"] == report["speakers_reconciled"]


def test_workflow_without_reconciliation_keeps_live_labels(
    stores: tuple[SqliteSessionStore, SqliteTranscriptStore],
) -> None:
    sessions, transcripts = stores
    WorkflowSteps(sessions, transcripts, OfflineNotesGenerator(), reconcile=None).generate_notes("s1")
    assert transcripts.speakers("s1") == {"S1": "S1", "S2": "S2", "S3": "S3"}
    assert transcripts.speaker_relabel("s1") is None


def test_names_survive_a_reconciliation_that_saw_no_voices() -> None:
    # Windows with no stored voices (diarization off, older windows): nothing to cluster, the
    # owner's names stay (the merge of voices and reconciliation lost them once).
    assert SpeakerRelabel({}, (), (), 0.0).carry_names({"S1": "Dana"}) == {"S1": "Dana"}
    merged = SpeakerRelabel({0: {"S5": "S1"}}, ("S1", "S5"), ("S1",), 0.0)
    assert merged.carry_names({"S5": "Lee", "S2": "Kim"}) == {"S1": "Lee", "S2": "Kim"}

"""SQLite stores: idempotent window commits, interim vs final, conditional transitions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord, WindowStatus
from stores.base import Session, SessionProgress, SessionState, StateConflict
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore


def _seg(win: int, idx: int, text: str, final: bool = True) -> TranscriptSegment:
    return TranscriptSegment("s1", win, idx, win * 30 + idx, win * 30 + idx + 1, text, "S1", is_final=final)


def test_replaying_a_window_rewrites_the_same_rows(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    window = WindowRecord("s1", 0, 0, 480000)
    progress = SessionProgress("s1", 1, 480000)
    for _ in range(3):
        store.commit_window(window, [_seg(0, 0, "hello"), _seg(0, 1, "world")], progress)
    assert [s.text for s in store.segments("s1")] == ["hello", "world"]
    assert store.load_progress("s1") == progress


def test_final_replaces_interim_and_interim_never_overwrites_final(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    assert store.put_interim("s1", 0, [_seg(0, 0, "hel", False), _seg(0, 1, "wor", False), _seg(0, 2, "x", False)])
    assert store.segments("s1") == []
    assert [s.text for s in store.segments("s1", include_interim=True)] == ["hel", "wor", "x"]
    store.commit_window(WindowRecord("s1", 0, 0, 16000), [_seg(0, 0, "hello")], SessionProgress("s1", 1, 16000))
    assert [(s.text, s.is_final) for s in store.segments("s1", include_interim=True)] == [("hello", True)]
    assert not store.put_interim("s1", 0, [_seg(0, 0, "late", False)])
    changes = store.changes_since("s1", 0)
    assert [c.is_final for c in changes] == [True]  # the window's latest state only
    assert store.changes_since("s1", changes[-1].revision) == []


def test_speaker_names(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    store.commit_window(WindowRecord("s1", 0, 0, 16000), [_seg(0, 0, "hi")], SessionProgress("s1", 1, 16000))
    assert store.speakers("s1") == {"S1": "S1"}
    store.rename_speaker("s1", "S1", "Dana")
    assert store.speakers("s1") == {"S1": "Dana"}


def test_session_transitions_are_compare_and_set(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "t.db")
    store.create(Session("a", "m", "u", "t", "key-a"))
    with pytest.raises(StateConflict):
        store.create(Session("a", "m", "u", "t", "key-b"))
    store.transition("a", [SessionState.STARTING], SessionState.LIVE)
    store.transition("a", [SessionState.LIVE], SessionState.ENDING)
    with pytest.raises(StateConflict, match="is ending"):
        store.transition("a", [SessionState.LIVE], SessionState.ENDING)
    assert store.find_by_stream_key("key-a").session_id == "a"  # type: ignore[union-attr]
    assert store.find_by_stream_key("nope") is None


def test_windows_keep_their_speaker_turns_and_old_files_upgrade(tmp_path: Path) -> None:
    """Windows gained turns (issue 10) and dropped_segments (issue 11); an old file is migrated on open."""
    import sqlite3

    from contracts.segments import SpeakerTurn

    path = tmp_path / "old.db"
    # A file written before both columns: the windows table has neither.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE windows (session_id TEXT NOT NULL, window_index INTEGER NOT NULL, "
            "start_sample INTEGER NOT NULL, end_sample INTEGER NOT NULL, status TEXT NOT NULL, error TEXT, "
            "audio_uri TEXT, revision INTEGER NOT NULL, PRIMARY KEY (session_id, window_index))"
        )
        conn.execute("INSERT INTO windows VALUES ('old', 0, 0, 16000, 'done', NULL, NULL, 1)")
    store = SqliteTranscriptStore(path)
    assert store.windows("old") == [WindowRecord("old", 0, 0, 16000)]
    turns = (SpeakerTurn(0.5, 1.25, "S1"), SpeakerTurn(1.0, 2.0, "S2"))
    store.commit_window(
        WindowRecord("s1", 0, 0, 32000, turns=turns, dropped_segments=2),
        [_seg(0, 0, "hi")],
        SessionProgress("s1", 1, 32000),
    )
    assert store.windows("s1") == [WindowRecord("s1", 0, 0, 32000, turns=turns, dropped_segments=2)]
    SqliteTranscriptStore(path)  # opening again changes nothing


def test_notes_are_stored_as_the_contract_writes_them(tmp_path: Path) -> None:
    golden = json.loads((Path(__file__).resolve().parents[1] / "contracts" / "golden" / "notes_v2.json").read_text())
    store = SqliteTranscriptStore(tmp_path / "t.db")
    store.put_notes("s", golden)
    assert SqliteTranscriptStore(tmp_path / "t.db").get_notes("s") == golden
    assert store.get_notes("other") is None


def test_window_status_is_stored_as_the_same_strings(tmp_path: Path) -> None:
    """WindowStatus is a StrEnum over the strings stores held before: rows written either way match."""
    path = tmp_path / "t.db"
    store = SqliteTranscriptStore(path)
    store.commit_window(
        WindowRecord("s1", 0, 0, 16000, WindowStatus.FAILED, "boom"), [], SessionProgress("s1", 1, 16000)
    )
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status, typeof(status) FROM windows").fetchall() == [("failed", "text")]
    (window,) = store.windows("s1")
    assert window.status is WindowStatus.FAILED
    assert [s.value for s in WindowStatus] == ["done", "failed"]

"""Meetings and search across them (SQLite FTS5 store, coordinator actions, CLI)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from control.access import USER, Caller
from control.api import Coordinator
from flowbot.cli import main
from stores.base import MATCH_END, MATCH_START, Session, SessionProgress
from stores.sqlite import SqliteTranscriptStore


def _commit(store: SqliteTranscriptStore, sid: str, window: int, *texts: str, speaker: str = "S1") -> None:
    t0 = 30.0 * window
    segs = [
        TranscriptSegment(sid, window, i, t0 + 2 * i, t0 + 2 * i + 2, t, speaker=speaker) for i, t in enumerate(texts)
    ]
    store.commit_window(
        WindowRecord(sid, window, int(t0 * 16000), int((t0 + 30) * 16000)),
        segs,
        SessionProgress(sid, window + 1, int((t0 + 30) * 16000)),
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteTranscriptStore:
    return SqliteTranscriptStore(tmp_path / "flowbot.db")


def test_search_stems_ranks_and_marks_the_matched_words(store: SqliteTranscriptStore) -> None:
    _commit(store, "a", 0, "We decided to move the launch.", "Launch launch launch, decided.", "Nothing to see.")
    _commit(store, "b", 0, "The decision on the launch is pending.")
    hits = store.search("decide LAUNCH", session_ids=None, limit=10)
    # "decide" stems like "decided" but not like "decision"; the denser match ranks first.
    assert [(h.session_id, h.segment_index) for h in hits] == [("a", 1), ("a", 0)]
    marked = [f"{MATCH_START}{w}{MATCH_END}" for w in ("Launch", "launch", "launch", "decided")]
    assert hits[0].snippet == "{} {} {}, {}.".format(*marked)
    assert hits[0].score > hits[1].score
    assert (hits[1].start, hits[1].end, hits[1].speaker) == (0.0, 2.0, "S1")
    assert [h.session_id for h in store.search("launch", session_ids=["b"], limit=10)] == ["b"]
    assert store.search("launch", session_ids=[], limit=10) == []


def test_only_final_rows_are_found_and_a_replayed_window_is_found_once(store: SqliteTranscriptStore) -> None:
    store.put_interim("a", 0, [TranscriptSegment("a", 0, 0, 0.0, 2.0, "provisional budget", is_final=False)])
    assert store.search("budget", session_ids=None, limit=10) == []
    _commit(store, "a", 0, "the final budget")
    _commit(store, "a", 0, "the final budget")  # replay: same rows rewritten
    assert len(store.search("budget", session_ids=None, limit=10)) == 1
    _commit(store, "a", 0, "the final figures")  # a window rewritten with other text
    assert store.search("budget", session_ids=None, limit=10) == []
    assert len(store.search("figures", session_ids=None, limit=10)) == 1


def test_rows_changed_in_place_are_reindexed(store: SqliteTranscriptStore, tmp_path: Path) -> None:
    _commit(store, "a", 0, "old words here")
    with sqlite3.connect(tmp_path / "flowbot.db") as conn:  # e.g. a relabel or a correction in place
        conn.execute("UPDATE segments SET text = 'new words here' WHERE session_id = 'a'")
    assert store.search("old", session_ids=None, limit=10) == []
    assert len(store.search("new", session_ids=None, limit=10)) == 1


def test_a_file_from_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "flowbot.db"
    _commit(SqliteTranscriptStore(path), "a", 0, "archived meeting about hiring")
    with sqlite3.connect(path) as conn:  # what an older release left: no index, no triggers
        for name in ("segments_fts_insert", "segments_fts_delete", "segments_fts_update"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE segments_fts")
        conn.execute("DROP TABLE store_meta")
    assert [h.text for h in SqliteTranscriptStore(path).search("hiring", session_ids=None, limit=5)] == [
        "archived meeting about hiring"
    ]


@pytest.mark.parametrize("query", ['"', "NEAR(a b)", "a* OR b", "col:word", "-x", "^start", "AND", "(((", "\x00"])
def test_query_syntax_is_never_run(store: SqliteTranscriptStore, query: str) -> None:
    _commit(store, "a", 0, "plain words only")
    # No sqlite3.OperationalError from FTS5 syntax: the words are searched for as words.
    assert store.search(query, session_ids=None, limit=5) == []


def _session(api: Coordinator, sid: str, user: str, topic: str, created: float, *texts: str) -> None:
    api.ctx.sessions.create(Session(sid, "m-" + sid, user, topic, "key-" + sid, created_at=created))
    assert isinstance(api.ctx.transcripts, SqliteTranscriptStore)
    _commit(api.ctx.transcripts, sid, 0, *texts)


def _as_user(api: Coordinator) -> Coordinator:
    def authenticate(headers: Mapping[str, str]) -> Caller:
        return Caller(headers["x-user"], USER)

    return Coordinator(dataclasses.replace(api.ctx, authenticate=authenticate))


def call(api: Coordinator, body: object, user: str | None = None) -> tuple[int, dict]:
    resp = api.handle("POST", {"x-user": user} if user else {}, json.dumps(body).encode())
    return resp.status, resp.body


def test_search_and_list_show_a_user_only_their_own_meetings(api: Coordinator) -> None:
    _session(api, "s-alice-1", "alice", "Budget review", 100.0, "The budget is approved.", "Next item.")
    _session(api, "s-alice-2", "alice", "Hiring", 200.0, "We hire two engineers.")
    _session(api, "s-bob", "bob", "Bob's budget", 300.0, "Secret budget numbers.")
    api.ctx.transcripts.rename_speaker("s-alice-1", "S1", "Dana")
    users = _as_user(api)

    status, got = call(users, {"action": "search", "query": "budget"}, user="alice")
    assert status == 200, got
    assert [(h["session_id"], h["speaker_name"], h["start"], h["topic"]) for h in got["hits"]] == [
        ("s-alice-1", "Dana", 0.0, "Budget review")
    ]
    assert got["hits"][0]["url"].endswith("/sessions/s-alice-1?t=0.00")

    status, got = call(users, {"action": "list_sessions"}, user="alice")
    assert status == 200
    assert [(m["session_id"], m["topic"], m["duration"], m["speakers"]) for m in got["sessions"]] == [
        ("s-alice-2", "Hiring", 30.0, ["S1"]),
        ("s-alice-1", "Budget review", 30.0, ["Dana"]),
    ]
    # The local operator reads everything.
    status, got = call(api, {"action": "search", "query": "budget", "limit": 5})
    assert {h["session_id"] for h in got["hits"]} == {"s-alice-1", "s-bob"}


@pytest.mark.parametrize(
    "body",
    [
        {"action": "search"},
        {"action": "search", "query": "?!"},
        {"action": "search", "query": "x" * 501},
        {"action": "search", "query": "budget", "limit": True},
        {"action": "search", "query": "budget", "limit": "5"},
        {"action": "search", "query": "budget", "limit": 0},
        {"action": "list_sessions", "limit": 10**6},
    ],
)
def test_bad_search_and_list_bodies_are_400(api: Coordinator, body: dict) -> None:
    status, got = call(api, body)
    assert status == 400, got


def test_cli_lists_and_searches(api: Coordinator, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _session(api, "s-1", "local", "Weekly planning", 100.0, "Ship the release on Friday.")
    assert main(["--data-dir", str(settings.data_dir), "sessions"]) == 0
    out = capsys.readouterr().out
    assert "s-1" in out and "Weekly planning" in out and "0:30" in out
    assert main(["--data-dir", str(settings.data_dir), "search", "friday release"]) == 0
    out = capsys.readouterr().out
    assert "Weekly planning  0:00  S1: Ship the [release] on [Friday]." in out and "/sessions/s-1?t=0.00" in out
    assert main(["--data-dir", str(settings.data_dir), "search", "nothing-like-this"]) == 1


def test_a_word_said_everywhere_ranks_the_newest_mentions_and_the_callers_own(
    store: SqliteTranscriptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stores.sqlite.SEARCH_CANDIDATES", 2)
    for i, sid in enumerate(["alice", "alice", "bob", "bob", "bob"]):
        _commit(store, sid, i, f"status update number {i}")
    assert sorted(h.window_index for h in store.search("update", session_ids=None, limit=10)) == [3, 4]
    # The caller's sessions are chosen before the cap: Bob's newer mentions do not hide Alice's.
    assert sorted(h.window_index for h in store.search("update", session_ids=["alice"], limit=10)) == [0, 1]

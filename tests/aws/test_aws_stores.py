"""DynamoSessionStore against moto's DynamoDB, S3Archive against LocalStack's S3."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from contracts.settings import Settings
from stores.base import Session, SessionNotFound, SessionState, StateConflict
from stores.dynamodb import DynamoSessionStore
from stores.s3_archive import S3Archive

LIVE = SessionState.LIVE


@pytest.fixture
def sessions(aws_settings: Settings) -> DynamoSessionStore:
    store = DynamoSessionStore(aws_settings, table=f"sessions-{uuid.uuid4().hex[:8]}")
    store.create_table()
    return store


def _session(sid: str, key: str, created: float = 1000.0) -> Session:
    return Session(sid, "meet", "user-1", "planning", key, created_at=created, updated_at=created)


def test_create_get_find_list(sessions: DynamoSessionStore) -> None:
    sessions.create(_session("s1", "key-1", 1.0))
    sessions.create(_session("s2", "key-2", 2.0))
    assert sessions.get("s1").stream_key == "key-1"
    found = sessions.find_by_stream_key("key-2")
    assert found is not None and found.session_id == "s2"
    assert sessions.find_by_stream_key("nope") is None
    with pytest.raises(SessionNotFound):
        sessions.get("missing")
    sessions.transition("s2", [SessionState.STARTING], LIVE, rtmp_url="rtmp://x/live")
    assert [s.session_id for s in sessions.list()] == ["s1", "s2"]
    assert [s.session_id for s in sessions.list([LIVE])] == ["s2"]
    assert sessions.get("s2").rtmp_url == "rtmp://x/live"


def test_duplicate_id_or_stream_key_is_a_conflict_and_changes_nothing(
    sessions: DynamoSessionStore,
) -> None:
    sessions.create(_session("s1", "key-1"))
    with pytest.raises(StateConflict, match="already exists"):
        sessions.create(_session("s1", "key-9"))
    with pytest.raises(StateConflict, match="stream key"):
        sessions.create(_session("s3", "key-1"))
    assert sessions.find_by_stream_key("key-9") is None
    with pytest.raises(SessionNotFound):
        sessions.get("s3")


def test_transition_from_unexpected_state_is_refused(sessions: DynamoSessionStore) -> None:
    sessions.create(_session("s1", "k"))
    with pytest.raises(StateConflict, match="is starting"):
        sessions.transition("s1", [LIVE], SessionState.ENDING)
    assert sessions.get("s1").state == SessionState.STARTING
    with pytest.raises(ValueError, match="stream key"):
        sessions.transition("s1", [SessionState.STARTING], LIVE, stream_key="other")


def test_two_coordinators_racing_to_end_a_session_exactly_one_wins(
    sessions: DynamoSessionStore, aws_settings: Settings
) -> None:
    sessions.create(_session("s1", "k"))
    sessions.transition("s1", [SessionState.STARTING], LIVE)
    # Separate store objects (own clients), as two coordinator processes would have.
    racers = [DynamoSessionStore(aws_settings, table=sessions.table) for _ in range(6)]
    results: list[str] = []
    barrier = threading.Barrier(len(racers))

    def end(store: DynamoSessionStore, n: int) -> None:
        barrier.wait()
        try:
            store.transition("s1", [LIVE], SessionState.ENDING, reason=f"racer-{n}")
            results.append(f"won-{n}")
        except StateConflict:
            results.append("conflict")

    threads = [threading.Thread(target=end, args=(s, i)) for i, s in enumerate(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("conflict") == len(racers) - 1
    final = sessions.get("s1")
    assert final.state == SessionState.ENDING and final.reason == f"racer-{winners[0][4:]}"


def test_s3_archive_round_trip(aws_settings: Settings) -> None:
    archive = S3Archive(aws_settings)
    pcm = (np.sin(np.arange(16_000 * 3) / 7.0) * 8000).astype(np.int16)
    uri = archive.put("sess-1", 4, pcm)
    assert uri == f"s3://{aws_settings.archive_bucket}/sessions/sess-1/windows/000004.flac"
    assert np.array_equal(archive.get(uri), pcm)
    assert archive.put("sess-1", 4, pcm) == uri  # replay: same key, same audio
    with pytest.raises(FileNotFoundError):
        archive.get(f"s3://{aws_settings.archive_bucket}/sessions/none/windows/000000.flac")
    with pytest.raises(ValueError, match="s3://"):
        archive.get("file:///tmp/x.flac")

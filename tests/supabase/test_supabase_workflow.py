"""The end-of-session workflow as the Step Functions Lambdas run it, with Supabase transcripts.

Before, only the coordinator's copy of the workflow steps (which never runs on
AWS: Step Functions calls control.lambda_handlers) wrote the final state to the
meeting's row, so ``meetings.status`` stayed ``live`` after a finished meeting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from control import lambda_handlers
from stores.base import Session, SessionProgress, SessionState
from stores.sqlite import SqliteSessionStore
from stores.supabase import SupabaseTranscriptStore
from testkit.supabase_stack import SupabaseStack


@pytest.fixture
def lambda_env(stack: SupabaseStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh workflow 'container': Supabase transcripts, SQLite sessions (DynamoDB's stand-in)."""
    env = {
        "FLOWBOT_DATA_DIR": str(tmp_path),
        "FLOWBOT_STORE": "supabase",
        "FLOWBOT_SESSION_STORE": "sqlite",
        "FLOWBOT_SUPABASE_URL": stack.url,
        "FLOWBOT_SUPABASE_SERVICE_KEY": stack.service_key,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SECRETS_TO_ENV", raising=False)
    lambda_handlers.reset()
    yield tmp_path / "flowbot.db"
    lambda_handlers.reset()


def test_finalize_writes_the_meeting_status_and_notes(
    stack: SupabaseStack, lambda_env: Path, new_session: Callable[..., Session]
) -> None:
    session = new_session(owner=str(uuid.uuid4()))
    sid = session.session_id
    SqliteSessionStore(lambda_env).create(
        Session(sid, session.meeting_id, session.user_id, session.topic, session.stream_key, SessionState.PROCESSING)
    )
    seg = TranscriptSegment(sid, 0, 0, 0.5, 2.0, "We decided to ship on Friday.", "S1")
    transcripts = SupabaseTranscriptStore(stack.url, stack.service_key)
    transcripts.commit_window(WindowRecord(sid, 0, 0, 32_000), [seg], SessionProgress(sid, 1, 32_000, 32_000))

    assert lambda_handlers.check_windows_handler({"session_id": sid})["done"] is True
    lambda_handlers.generate_notes_handler({"session_id": sid})
    final = lambda_handlers.finalize_handler({"session_id": sid, "timed_out": False})

    assert final["state"] == "completed"
    ((status, has_notes),) = stack.pg.query(
        f"SELECT status, notes IS NOT NULL FROM meetings WHERE id = '{session.meeting_id}'"
    )
    assert status.strip() == "completed" and has_notes.strip() == "t"
    ((state,),) = stack.pg.query(f"SELECT state FROM sessions WHERE id = '{sid}'")
    assert state.strip() == "completed"

"""Migration, row-level security and the Realtime publication, on real PostgreSQL + PostgREST."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contracts.segments import SpeakerRelabel, TranscriptSegment, WindowRecord
from stores.base import Session, SessionProgress
from stores.supabase import SupabaseMeetingStatus, SupabaseTranscriptStore
from testkit.supabase_stack import BOOTSTRAP, MIGRATIONS, SupabaseStack, find_pg_bin, make_jwt

NewSession = Callable[..., Session]
TABLES = [
    "meetings",
    "sessions",
    "transcript_segments",
    "transcript_windows",
    "session_speakers",
    "meeting_notes",
    "session_progress",
    "voices",
    "voice_namings",
    "session_speaker_relabels",
]


def rest(stack: SupabaseStack, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
    """A raw PostgREST call as a client would make it (apikey = anon key, bearer = token)."""
    headers = {"apikey": stack.anon_key, "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method,
        f"{stack.url}/rest/v1/{path}",
        headers=headers,
        content=None if body is None else json.dumps(body),
        timeout=10,
    )


def rows(resp: httpx.Response) -> list[dict[str, Any]]:
    """Rows of a successful read; a refused read (401/403) counts as no rows."""
    if resp.status_code in (401, 403):
        assert resp.json()["code"] == "42501", resp.text
        return []
    assert resp.status_code == 200, resp.text
    out: list[dict[str, Any]] = resp.json()
    return out


@pytest.fixture()
def owned(stack: SupabaseStack, new_session: NewSession) -> tuple[Session, str, str]:
    """A session with a window, speakers and notes; (session, owner token, other's token)."""
    owner = str(uuid.uuid4())
    session = new_session(owner=owner)
    sid = session.session_id
    store = SupabaseTranscriptStore(stack.url, stack.service_key)
    store.commit_window(
        WindowRecord(sid, 0, 0, 160_000),
        [TranscriptSegment(sid, 0, 0, 0.0, 4.0, "secret plans", speaker="A")],
        SessionProgress(sid, 1, 160_000),
    )
    store.rename_speaker(sid, "A", "Alice")
    store.put_notes(sid, {"summary": "secret"})
    store.relabel_speakers(sid, SpeakerRelabel({}, ("A",), ("A",), 1.0))
    return session, stack.user_token(owner), stack.user_token(str(uuid.uuid4()))


def test_owner_reads_own_meeting_only(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    session, mine, theirs = owned
    sid = session.session_id
    reads = {
        "meetings": f"meetings?id=eq.{session.meeting_id}",
        "sessions": f"sessions?id=eq.{sid}",
        "transcript_segments": f"transcript_segments?session_id=eq.{sid}",
        "transcript_windows": f"transcript_windows?session_id=eq.{sid}",
        "session_speakers": f"session_speakers?session_id=eq.{sid}",
        "meeting_notes": f"meeting_notes?session_id=eq.{sid}",
        "session_speaker_relabels": f"session_speaker_relabels?session_id=eq.{sid}",
    }
    for table, path in reads.items():
        assert len(rows(rest(stack, "GET", path, mine))) == 1, table
        assert rows(rest(stack, "GET", path, theirs)) == [], table
        assert rows(rest(stack, "GET", path, None)) == [], table  # anon key only
        assert rows(rest(stack, "GET", path, stack.anon_key)) == [], table
    assert rows(rest(stack, "GET", reads["transcript_segments"], mine))[0]["text"] == "secret plans"
    # Unfiltered reads show another user nothing at all of it.
    assert all(r["session_id"] != sid for r in rows(rest(stack, "GET", "transcript_segments", theirs)))
    # Internal progress (speaker centroids) is not readable even by the owner.
    assert rows(rest(stack, "GET", f"session_progress?session_id=eq.{sid}", mine)) == []


def test_read_functions_apply_rls(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    session, mine, theirs = owned
    body = {"p_session_id": session.session_id, "p_revision": 0}
    got = rest(stack, "POST", "rpc/flowbot_changes_since", mine, body)
    assert got.status_code == 200 and len(got.json()) == 1
    assert got.json()[0]["segments"][0]["text"] == "secret plans"
    got = rest(stack, "POST", "rpc/flowbot_changes_since", theirs, body)
    assert got.status_code == 200 and got.json() == []
    got = rest(stack, "POST", "rpc/flowbot_speakers", theirs, {"p_session_id": session.session_id})
    assert got.json() == {}
    assert rest(stack, "POST", "rpc/flowbot_changes_since", None, body).status_code == 401


def test_client_writes_refused(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    session, mine, _ = owned
    sid = session.session_id
    seg = {"session_id": sid, "window_index": 9, "segment_index": 0, "start": 0, "end": 1, "text": "forged"}
    for token in (mine, None):
        for method, path, body in [
            ("POST", "transcript_segments", seg),
            ("PATCH", f"transcript_segments?session_id=eq.{sid}", {"text": "forged"}),
            ("DELETE", f"transcript_segments?session_id=eq.{sid}", None),
            ("PATCH", f"meetings?id=eq.{session.meeting_id}", {"owner_id": str(uuid.uuid4())}),
            ("POST", "meetings", {"id": "m-forged", "owner_id": str(uuid.uuid4())}),
            ("POST", "meeting_notes", {"session_id": sid, "notes": {}}),
            (
                "POST",
                "rpc/flowbot_commit_window",
                {
                    "p_window": {"session_id": sid, "window_index": 9, "start_sample": 0, "end_sample": 1},
                    "p_segments": [seg],
                    "p_progress": {"session_id": sid, "next_window_index": 10, "committed_sample": 1},
                },
            ),
            (
                "POST",
                "rpc/flowbot_register_session",
                {
                    "p_session_id": "x",
                    "p_meeting_id": session.meeting_id,
                    "p_owner_id": str(uuid.uuid4()),
                    "p_topic": "",
                    "p_state": "live",
                },
            ),
        ]:
            r = rest(stack, method, path, token, body)
            assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
            assert r.json()["code"] == "42501", r.text
    texts = stack.pg.query(f"SELECT text FROM transcript_segments WHERE session_id = '{sid}'")
    assert texts == [["secret plans"]]
    assert stack.pg.query(
        f"SELECT count(*) FROM meetings WHERE id = '{session.meeting_id}' AND owner_id = '{session.user_id}'"
    ) == [["1"]]


def test_forged_token_rejected(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    session, _, _ = owned
    forged = make_jwt("service_role", aud=None, secret="not-the-project-secret-but-long-enough")
    r = rest(stack, "GET", "transcript_segments", forged)
    assert r.status_code == 401 and r.json()["code"] == "PGRST301"
    expired = make_jwt("authenticated", session.user_id, expires_in=-60)
    r = rest(stack, "GET", "transcript_segments", expired)
    assert r.status_code == 401 and r.json()["code"] == "PGRST301"


def test_realtime_sees_rows_through_subscriber_rls(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    """Realtime checks each change as the subscriber (role + request.jwt.claims); same here."""
    session, _, _ = owned
    sql = f"SELECT count(*) FROM transcript_segments WHERE session_id = '{session.session_id}'"
    for user, expected in [(session.user_id, "1"), (str(uuid.uuid4()), "0")]:
        claims = json.dumps({"sub": user, "role": "authenticated"})
        out = stack.pg.psql(sql, role="authenticated", claims=claims).stdout.strip()
        assert out == expected
    assert stack.pg.psql(sql, role="anon", check=False).returncode != 0  # permission denied


def test_publication_membership(stack: SupabaseStack) -> None:
    published = {
        r[0]
        for r in stack.pg.query(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND schemaname = 'public'"
        )
    }
    assert published == {
        "meetings",
        "sessions",
        "transcript_segments",
        "transcript_windows",
        "session_speakers",
        "meeting_notes",
        "voice_namings",
    }
    assert stack.pg.query(
        "SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = 'supabase_realtime'"
    ) == [["t", "t", "t"]]


def test_rls_enabled_everywhere(stack: SupabaseStack) -> None:
    got = dict(
        stack.pg.query(
            "SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            f"AND relname IN ({', '.join(repr(t) for t in TABLES)})".replace('"', "'")
        )
    )
    assert got == dict.fromkeys(TABLES, "t")


def _schema_dump(stack: SupabaseStack) -> str:
    out = subprocess.run(
        [find_pg_bin("pg_dump"), "--schema-only", "--no-owner", stack.pg.dsn],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # pg_dump's \restrict lines carry a random key per run.
    skip = ("\\restrict", "\\unrestrict")
    return "\n".join(x for x in out.splitlines() if not x.startswith(skip))


def test_migration_reapplies_without_change(stack: SupabaseStack, owned: tuple[Session, str, str]) -> None:
    before_schema = _schema_dump(stack)
    before_rows = stack.pg.query("SELECT count(*) FROM transcript_segments")
    stack.apply_migrations(bootstrap=True)
    assert _schema_dump(stack) == before_schema
    assert stack.pg.query("SELECT count(*) FROM transcript_segments") == before_rows


def test_migration_applies_from_scratch_on_fresh_database(stack: SupabaseStack) -> None:
    db = "fresh_" + uuid.uuid4().hex[:8]
    stack.pg.psql(f"CREATE DATABASE {db}")
    base = [find_pg_bin("psql"), stack.pg.dsn.rsplit("/", 1)[0] + "/" + db, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    try:
        # Without the Supabase roles the migration must stop, not half-apply.
        bare = subprocess.run([*base, "-1", "-f", str(min(MIGRATIONS.glob("*.sql")))], capture_output=True, text=True)
        assert bare.returncode != 0 and "auth" in bare.stderr
        for path in [BOOTSTRAP, *sorted(MIGRATIONS.glob("*.sql"))]:
            subprocess.run([*base, "-1", "-f", str(path)], check=True, capture_output=True)
        tables = subprocess.run(
            [*base, "-A", "-t", "-c", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert tables == str(len(TABLES))
    finally:
        stack.pg.psql(f"DROP DATABASE {db} WITH (FORCE)")


def test_meeting_status_at_end_of_workflow(
    stack: SupabaseStack, meetings: SupabaseMeetingStatus, owned: tuple[Session, str, str]
) -> None:
    session, mine, theirs = owned
    notes = {"summary": "done", "actions": ["ship it"]}
    meetings.update(session.meeting_id, "completed", notes, session_id=session.session_id)
    (meeting,) = rows(rest(stack, "GET", f"meetings?id=eq.{session.meeting_id}", mine))
    assert meeting["status"] == "completed" and meeting["notes"] == notes
    (sess,) = rows(rest(stack, "GET", f"sessions?id=eq.{session.session_id}", mine))
    assert sess["state"] == "completed" and sess["ended_at"] is not None
    store = SupabaseTranscriptStore(stack.url, stack.service_key)
    assert store.get_notes(session.session_id) == notes
    assert rows(rest(stack, "GET", f"meetings?id=eq.{session.meeting_id}", theirs)) == []


def test_register_refuses_other_owners_meeting(meetings: SupabaseMeetingStatus, new_session: NewSession) -> None:
    from dataclasses import replace

    from stores.base import PermanentStoreError

    session = new_session()
    hijack = replace(session, session_id="s-" + uuid.uuid4().hex[:8], user_id=str(uuid.uuid4()))
    with pytest.raises(PermanentStoreError, match="another user"):
        meetings.register_session(hijack)
    with pytest.raises(PermanentStoreError, match="invalid input syntax for type uuid"):
        meetings.register_session(replace(session, session_id="s-x", user_id="not-a-uuid"))
    meetings.register_session(session)  # re-registering the same session is fine

"""The voice library on real PostgreSQL + PostgREST: the service-role store and row-level security.

A voice embedding is personal data: only its owner reads or deletes it, nobody
but the service role writes it, anon sees nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from contracts.voices import NamingState, Voice, VoiceNaming
from stores.base import Session, SessionProgress
from stores.supabase import RetryPolicy, SupabaseMeetingStatus, SupabaseTranscriptStore
from stores.supabase_voices import SupabaseVoiceLibrary
from testkit.supabase_stack import SupabaseStack
from tests.supabase.fake_realtime import FakeRealtime
from tests.supabase.test_supabase_rls import rest, rows

NewSession = Callable[..., Session]
EMBEDDING = tuple(float(i % 7) / 7.0 - 0.4 for i in range(192))


def voice(owner: str, name: str = "Dana") -> Voice:
    now = time.time()
    return Voice(str(uuid.uuid4()), owner, name, "offline", EMBEDDING, 12.5, now, now)


def commit_speakers(store: SupabaseTranscriptStore, session: Session, speakers: dict[str, list[float]]) -> None:
    """One committed window whose speaker registry holds these speakers (9 s of speech each)."""
    sid = session.session_id
    segs = [TranscriptSegment(sid, 0, i, i, i + 1.0, "Hello.", label) for i, label in enumerate(speakers)]
    spk_state = {
        "version": 1,
        "next": len(speakers) + 1,
        "last": None,
        "speakers": [{"label": k, "centroid": v, "seconds": 9.0} for k, v in speakers.items()],
    }
    store.commit_window(WindowRecord(sid, 0, 0, 32000), segs, SessionProgress(sid, 1, 32000, 32000, spk_state))


def test_library_scopes_voices_to_their_owner(stack: SupabaseStack, fast_retry: RetryPolicy) -> None:
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    dana, lee = voice(alice), voice(bob, "Lee")
    lib.save_voice(dana)
    lib.save_voice(lee)
    got = lib.voices(alice)
    assert [v.voice_id for v in got] == [dana.voice_id]
    assert got[0].name == "Dana" and got[0].seconds == 12.5
    assert max(abs(a - b) for a, b in zip(got[0].embedding, EMBEDDING, strict=True)) < 1e-6
    assert abs(got[0].created_at - dana.created_at) < 1e-3
    assert lib.voices(alice, model="pyannote") == []
    assert lib.voices("local") == []  # not a Supabase user id: nobody's voices
    assert lib.forget_voice(alice, lee.voice_id) is False  # Bob's voice is not Alice's to forget
    assert lib.forget_voice(alice, "not-a-uuid") is False
    assert [v.voice_id for v in lib.voices(bob)] == [lee.voice_id]
    assert lib.forget_voice(alice, dana.voice_id) is True
    assert lib.voices(alice) == []
    assert stack.pg.query(f"SELECT count(*) FROM voices WHERE id = '{dana.voice_id}'") == [["0"]]


def test_namings_are_kept_and_lose_the_link_when_the_voice_is_forgotten(
    stack: SupabaseStack, fast_retry: RetryPolicy, new_session: NewSession
) -> None:
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    session = new_session()
    dana = voice(session.user_id)
    lib.save_voice(dana)
    lib.record_naming(VoiceNaming(session.session_id, "S2", dana.voice_id, "Dana", 0.91, NamingState.NAMED, 1e9))
    got = lib.namings(session.session_id)
    assert got["S2"].voice_id == dana.voice_id and got["S2"].score == 0.91 and got["S2"].state == NamingState.NAMED
    lib.record_naming(VoiceNaming(session.session_id, "S2", dana.voice_id, "Dana", 0.91, NamingState.UNDONE, 2e9))
    assert lib.namings(session.session_id)["S2"].state == NamingState.UNDONE
    assert lib.forget_voice(session.user_id, dana.voice_id)
    kept = lib.namings(session.session_id)["S2"]
    assert kept.voice_id is None and kept.name == "Dana"


def test_only_the_owner_reads_or_deletes_a_voice_and_no_client_writes_one(
    stack: SupabaseStack, fast_retry: RetryPolicy, new_session: NewSession
) -> None:
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    session = new_session()
    owner = session.user_id
    dana = voice(owner)
    lib.save_voice(dana)
    lib.record_naming(VoiceNaming(session.session_id, "S1", dana.voice_id, "Dana", 0.9, NamingState.NAMED, 1e9))
    mine, theirs = stack.user_token(owner), stack.user_token(str(uuid.uuid4()))

    assert [r["id"] for r in rows(rest(stack, "GET", "voices", mine))] == [dana.voice_id]
    assert rows(rest(stack, "GET", "voices", theirs)) == []
    assert rows(rest(stack, "GET", "voices", None)) == []  # anon
    assert len(rows(rest(stack, "GET", f"voice_namings?session_id=eq.{session.session_id}", mine))) == 1
    assert rows(rest(stack, "GET", f"voice_namings?session_id=eq.{session.session_id}", theirs)) == []

    forged = {
        "id": str(uuid.uuid4()),
        "owner_id": owner,
        "name": "X",
        "model": "offline",
        "embedding": [1.0],
        "seconds": 1,
    }
    for token in (mine, theirs, None):
        for method, path, body in [
            ("POST", "voices", forged),
            ("PATCH", f"voices?id=eq.{dana.voice_id}", {"name": "Mallory"}),
            (
                "POST",
                "voice_namings",
                {"session_id": session.session_id, "label": "S9", "name": "X", "score": 1, "state": "named"},
            ),
        ]:
            r = rest(stack, method, path, token, body)
            assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
            assert r.json()["code"] == "42501", r.text

    # Another user's delete matches nothing under RLS; the owner's deletes the row.
    r = rest(stack, "DELETE", f"voices?id=eq.{dana.voice_id}", theirs)
    assert r.status_code in (200, 204), r.text
    assert stack.pg.query(f"SELECT name FROM voices WHERE id = '{dana.voice_id}'") == [["Dana"]]
    r = rest(stack, "DELETE", f"voices?id=eq.{dana.voice_id}", mine)
    assert r.status_code in (200, 204), r.text
    assert stack.pg.query(f"SELECT count(*) FROM voices WHERE id = '{dana.voice_id}'") == [["0"]]
    assert lib.namings(session.session_id)["S1"].voice_id is None


def test_remember_then_name_the_owners_next_session_on_supabase(
    stack: SupabaseStack, fast_retry: RetryPolicy, new_session: NewSession
) -> None:
    from stores.voice_naming import Voices

    store = SupabaseTranscriptStore(stack.url, stack.service_key, retry=fast_retry)
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    voices = Voices(lib, store, model="offline", min_score=0.7, min_seconds=4.0)
    owner = str(uuid.uuid4())
    other = [x if i % 2 else -x for i, x in enumerate(reversed(EMBEDDING))]

    def commit(session: Session, speakers: dict[str, list[float]]) -> None:
        commit_speakers(store, session, speakers)

    first, second, theirs = new_session(owner=owner), new_session(owner=owner), new_session()
    commit(first, {"S1": list(EMBEDDING)})
    commit(second, {"S1": other, "S2": list(EMBEDDING)})
    commit(theirs, {"S1": list(EMBEDDING)})
    remembered = voices.remember(first, "S1", "Dana")
    assert [v.voice_id for v in lib.voices(owner, model="offline")] == [remembered.voice_id]

    named = voices.name_session(second)
    assert [(n.label, n.name) for n in named] == [("S2", "Dana")] and named[0].score > 0.99
    assert store.speakers(second.session_id) == {"S1": "S1", "S2": "Dana"}
    assert voices.name_session(theirs) == []  # another owner's session: never this owner's voices
    assert store.speakers(theirs.session_id) == {"S1": "S1"}
    # The owner's viewers read the naming (and its score) under RLS.
    got = rows(rest(stack, "GET", f"voice_namings?session_id=eq.{second.session_id}", stack.user_token(owner)))
    assert [(r["label"], r["name"], r["state"]) for r in got] == [("S2", "Dana", "named")]
    voices.undo(second, "S2")
    assert store.speakers(second.session_id) == {"S1": "S1", "S2": "S2"}
    assert voices.name_session(second) == []  # undone stays undone


@pytest.fixture()
def realtime(stack: SupabaseStack) -> Iterator[FakeRealtime]:
    fake = FakeRealtime(stack).start()
    yield fake
    fake.close()


@pytest.mark.slow
def test_flowbot_follow_tells_the_owner_who_was_named_by_voice_over_realtime(
    stack: SupabaseStack,
    fast_retry: RetryPolicy,
    new_session: NewSession,
    meetings: SupabaseMeetingStatus,
    realtime: FakeRealtime,
) -> None:
    from flowbot.follow import TranscriptRenderer, follow_supabase
    from stores.voice_naming import Voices

    store = SupabaseTranscriptStore(stack.url, stack.service_key, retry=fast_retry)
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    voices = Voices(lib, store, model="offline", min_score=0.7, min_seconds=4.0)
    session = new_session()
    sid = session.session_id
    commit_speakers(store, session, {"S1": list(EMBEDDING)})
    lib.save_voice(voice(session.user_id))
    out = io.StringIO()
    settings = Settings.from_env(
        {},
        store="supabase",
        supabase_url=stack.url,
        supabase_anon_key=stack.anon_key,
        supabase_access_token=stack.user_token(session.user_id),
    )
    follow = threading.Thread(
        target=lambda: asyncio.run(follow_supabase(settings, sid, out, renderer=TranscriptRenderer(out, tty=False))),
        daemon=True,
    )
    follow.start()
    realtime.wait_for(lambda rt: len(rt.subs) == 1)
    named = voices.name_session(session)
    line = f"-- S1 named Dana by voice (score {named[0].score:.2f}); undo: flowbot voices undo {sid} S1 --"
    realtime.wait_for(lambda rt: line in out.getvalue())
    voices.undo(session, "S1")
    realtime.wait_for(lambda rt: "was undone --" in out.getvalue())
    meetings.update(session.meeting_id, "completed", {"summary": "Done."}, session_id=sid)
    follow.join(30)
    assert not follow.is_alive(), out.getvalue()
    # The naming came through Realtime (the catch-up read on subscribe found none yet).
    assert any(m["payload"]["data"]["table"] == "voice_namings" for m in realtime.sent)
    assert out.getvalue().count(line) == 1, out.getvalue()


@pytest.fixture
def aws_env(stack: SupabaseStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The AWS processor's and workflow Lambdas' settings: Supabase transcripts and voices, SQLite
    sessions (DynamoDB's stand-in), CAM++ embeddings."""
    from control import lambda_handlers

    env = {
        "FLOWBOT_DATA_DIR": str(tmp_path),
        "FLOWBOT_STORE": "supabase",
        "FLOWBOT_SESSION_STORE": "sqlite",
        "FLOWBOT_SUPABASE_URL": stack.url,
        "FLOWBOT_SUPABASE_SERVICE_KEY": stack.service_key,
        "FLOWBOT_DIARIZATION": "offline",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SECRETS_TO_ENV", raising=False)
    lambda_handlers.reset()
    yield Settings.from_env()
    lambda_handlers.reset()


def test_one_owners_voice_never_names_another_owners_speaker_live_or_at_the_end(
    stack: SupabaseStack, aws_env: Settings, new_session: NewSession
) -> None:
    """Alice remembered Dana; Dana's very voice speaks in Bob's meetings too. Neither the
    processor's live naming nor the end-of-meeting workflow (the Step Functions task) may put
    Alice's name on Bob's speaker; both name Alice's own meetings (so the check can fail)."""
    from control import lambda_handlers
    from processor.build import live_voice_naming
    from stores.factory import session_store, transcript_store, voice_library

    store, lib, sessions = transcript_store(aws_env), voice_library(aws_env), session_store(aws_env)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    lib.save_voice(voice(alice))  # Dana, in Alice's library only
    meetings = {(owner, when): new_session(owner=owner) for owner in (alice, bob) for when in ("live", "end")}
    for session in meetings.values():
        sessions.create(Session(session.session_id, session.meeting_id, session.user_id, "", session.stream_key))
        assert isinstance(store, SupabaseTranscriptStore)
        commit_speakers(store, session, {"S1": list(EMBEDDING)})

    hook = live_voice_naming(aws_env, store)  # what the processor runs after each committed window
    assert hook is not None
    for owner in (alice, bob):
        hook(meetings[owner, "live"].session_id)
    for owner in (alice, bob):
        sid = meetings[owner, "end"].session_id
        lambda_handlers.generate_notes_handler({"session_id": sid})

    for (owner, _), session in meetings.items():
        sid = session.session_id
        if owner == alice:
            assert store.speakers(sid) == {"S1": "Dana"}, sid
            assert lib.namings(sid)["S1"].name == "Dana"
        else:
            assert store.speakers(sid) == {"S1": "S1"}, "Alice's voice named Bob's speaker"
            assert lib.namings(sid) == {}
            notes = store.get_notes(sid)
            assert notes is None or "Dana" not in json.dumps(notes)


def test_forgetting_leaves_the_embedding_in_no_table_of_the_database(
    stack: SupabaseStack, fast_retry: RetryPolicy, new_session: NewSession
) -> None:
    """Forgetting deletes the embedding everywhere: after ``forget_voice`` no row of any table,
    in any schema, holds it (namings keep the name and lose the link)."""
    lib = SupabaseVoiceLibrary(stack.url, stack.service_key, retry=fast_retry)
    session = new_session()
    marked = tuple(0.123457 + i * 1e-4 for i in range(192))  # numbers nothing else here holds
    dana = Voice(str(uuid.uuid4()), session.user_id, "Dana", "offline", marked, 12.5, time.time(), time.time())
    lib.save_voice(dana)
    lib.record_naming(VoiceNaming(session.session_id, "S1", dana.voice_id, "Dana", 0.9, NamingState.NAMED, 1e9))
    ((text,),) = stack.pg.query(f"SELECT embedding::text FROM voices WHERE id = '{dana.voice_id}'")
    probe = text[1:40]  # the first numbers as Postgres writes them

    def holders() -> list[str]:
        tables = stack.pg.query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        assert ["public.voice_namings"] in tables, tables
        found = []
        for (table,) in tables:
            ((count,),) = stack.pg.query(f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%{probe}%'")
            if int(count):
                found.append(table)
        return found

    assert holders() == ["public.voices"]  # the probe finds it where it is
    assert lib.forget_voice(session.user_id, dana.voice_id)
    assert holders() == []
    assert lib.namings(session.session_id)["S1"].voice_id is None


def test_a_name_given_by_voice_live_follows_its_speaker_through_the_relabel_on_supabase(
    stack: SupabaseStack, aws_env: Settings, new_session: NewSession
) -> None:
    """As in tests/test_voices.py: the Step Functions notes task carries the naming of a live
    label merged away at the end to the final label that took its name, so it can be undone."""
    from contracts.segments import SpeakerRelabel
    from control import lambda_handlers
    from stores.factory import session_store, transcript_store
    from stores.voice_naming import Voices

    store, sessions = transcript_store(aws_env), session_store(aws_env)
    assert isinstance(store, SupabaseTranscriptStore)
    voices = Voices.from_settings(SupabaseVoiceLibrary(aws_env), store, aws_env)
    session = new_session()
    sessions.create(Session(session.session_id, session.meeting_id, session.user_id, "", session.stream_key))
    voices.library.save_voice(voice(session.user_id))
    other = [x if i % 2 else -x for i, x in enumerate(reversed(EMBEDDING))]
    commit_speakers(store, session, {"S1": list(EMBEDDING), "S3": other})
    assert [n.label for n in voices.name_session(session)] == ["S1"]  # live
    merged = SpeakerRelabel(windows={0: {"S1": "S3"}}, before=("S1", "S3"), after=("S3",))
    assert store.relabel_speakers(session.session_id, merged)
    lambda_handlers.generate_notes_handler({"session_id": session.session_id})
    assert store.speakers(session.session_id) == {"S3": "Dana"}
    assert voices.library.namings(session.session_id)["S3"].state == NamingState.NAMED
    voices.undo(session, "S3")
    assert store.speakers(session.session_id) == {"S3": "S3"}

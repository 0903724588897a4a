"""Names that follow a voice: the voice library, the matching rule, the API, the workflow and the CLI.

Embeddings here are made up (random 192-d directions; a "same voice" is the
direction plus noise), so these tests check the rules, not the model; the
model's side is measured on real recordings in tests/realspeech/test_voice_naming.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from contracts.voices import NamingState, SessionVoice, Voice, match_voices, session_voices
from control.access import Caller
from control.api import Coordinator
from control.context import build_local_context
from flowbot.launch import EmbeddedLauncher
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from stores.base import SessionProgress
from stores.sqlite_voices import SqliteVoiceLibrary, pack_embedding
from streams.embedded import EmbeddedStream

DIM = 192
RNG = np.random.default_rng(2026)
DANA, LEE, STRANGER = (tuple(float(x) for x in RNG.normal(size=DIM)) for _ in range(3))


def like(voice: tuple[float, ...], noise: float = 0.3, seed: int = 1) -> tuple[float, ...]:
    """Another meeting's embedding of the same voice (cosine similarity about 0.95 at noise 0.3)."""
    rng = np.random.default_rng(seed)
    v = np.asarray(voice) / np.linalg.norm(voice)
    return tuple(float(x) for x in v + rng.normal(size=DIM) * noise / np.sqrt(DIM))


def state(speakers: Mapping[str, tuple[tuple[float, ...], float]]) -> dict[str, object]:
    """A session speaker registry state (processor/speakers.py, version 1)."""
    return {
        "version": 1,
        "next": len(speakers) + 1,
        "last": None,
        "speakers": [{"label": k, "centroid": list(e), "seconds": s} for k, (e, s) in speakers.items()],
    }


# --------------------------------------------------------------------------- the rule


def test_match_takes_the_best_pairs_one_to_one_above_the_thresholds() -> None:
    voices = [
        Voice("v-dana", "o", "Dana", "offline", DANA, 20, 0, 0),
        Voice("v-lee", "o", "Lee", "offline", LEE, 20, 0, 0),
    ]
    speakers = [
        SessionVoice("S1", like(DANA, seed=1), 10.0),
        SessionVoice("S2", like(DANA, noise=0.6, seed=2), 10.0),  # also Dana-like, but less so: no second Dana
        SessionVoice("S3", STRANGER, 30.0),
        SessionVoice("S4", like(LEE, seed=3), 2.0),  # Lee, but too short to put a name on
    ]
    got = match_voices(speakers, voices, min_score=0.7, min_seconds=4.0)
    assert [(m.label, m.name) for m in got] == [("S1", "Dana")]
    assert 0.9 < got[0].score <= 1.0
    assert match_voices(speakers, voices, min_score=0.999, min_seconds=0.0) == []
    # Another model's size of embedding never matches.
    other = [Voice("v-x", "o", "X", "offline", DANA[:64], 20, 0, 0)]
    assert match_voices([SessionVoice("S1", DANA, 10)], other, min_score=-1.0, min_seconds=0) == []


def test_session_voices_read_the_registry_state_and_skip_what_has_no_embedding() -> None:
    st = state({"S1": (DANA, 5.0)})
    st["speakers"].append({"label": "S2", "centroid": None, "seconds": 3.0})  # type: ignore[attr-defined]
    got = session_voices(st)
    assert [(v.label, v.seconds) for v in got] == [("S1", 5.0)]
    assert abs(float(np.linalg.norm(got[0].embedding)) - 1.0) < 1e-9
    assert session_voices({}) == [] and session_voices({"version": 99, "speakers": []}) == []
    assert session_voices({"labels": ["S1"]}) == []  # diarization off (identity mapper state)


# --------------------------------------------------------------------------- the SQLite library


def test_sqlite_library_scopes_every_read_and_delete_to_the_owner(tmp_path: Path) -> None:
    lib = SqliteVoiceLibrary(tmp_path / "flowbot.db")
    lib.save_voice(Voice("v1", "alice", "Dana", "offline", DANA, 12.0, 1.0, 1.0))
    lib.save_voice(Voice("v2", "bob", "Lee", "offline", LEE, 9.0, 1.0, 1.0))
    assert [v.voice_id for v in lib.voices("alice")] == ["v1"]
    assert lib.voices("alice", model="pyannote") == []
    got = lib.voices("alice")[0]
    assert got.name == "Dana" and np.allclose(got.embedding, DANA, rtol=1e-6)  # float32 round trip
    assert lib.forget_voice("alice", "v2") is False  # Bob's voice: not Alice's to forget
    assert [v.voice_id for v in lib.voices("bob")] == ["v2"]


def test_forgetting_overwrites_the_embedding_bytes_in_the_file_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "flowbot.db"
    lib = SqliteVoiceLibrary(path)
    lib.save_voice(Voice("v1", "alice", "Dana", "offline", DANA, 12.0, 1.0, 1.0))
    lib.save_voice(Voice("v2", "alice", "Lee", "offline", LEE, 12.0, 1.0, 1.0))
    # A checkpoint puts the rows in the main file too, as a long-lived store would have them.
    lib._db.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    blob = pack_embedding(DANA)[:64]

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("flowbot.db"))

    assert blob in on_disk()
    assert lib.forget_voice("alice", "v1") is True
    assert blob not in on_disk()
    assert pack_embedding(LEE)[:64] in on_disk()  # the other voice is untouched
    assert [v.name for v in lib.voices("alice")] == ["Lee"]


# --------------------------------------------------------------------------- API and workflow


def call(api: Coordinator, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    resp = api.handle("POST", headers or {}, json.dumps(body).encode())
    return resp.status, resp.body


def meeting(
    api: Coordinator,
    user: str,
    speakers: Mapping[str, tuple[tuple[float, ...], float]],
    headers: dict[str, str] | None = None,
) -> str:
    """A session of ``user`` whose processor committed one window with these speakers."""
    status, started = call(api, {"action": "start_session", "meeting_id": "m", "user_id": user}, headers)
    assert status == 200, started
    sid = started["session_id"]
    segs = [TranscriptSegment(sid, 0, i, i, i + 1.0, f"Line {i}.", label) for i, label in enumerate(speakers)]
    api.ctx.transcripts.commit_window(
        WindowRecord(sid, 0, 0, 16000 * len(segs)),
        segs,
        SessionProgress(sid, 1, 16000 * len(segs), 16000 * len(segs), state(speakers)),
    )
    return sid


def finish(api: Coordinator, sid: str, headers: dict[str, str] | None = None) -> dict:
    """End the session, wait for its workflow, return get_session."""
    assert call(api, {"action": "end_session", "session_id": sid}, headers)[0] == 200
    api.ctx.workflow.join(sid, timeout=30)  # type: ignore[attr-defined]
    status, got = call(api, {"action": "get_session", "session_id": sid}, headers)
    assert status == 200 and got["state"] == "completed", got
    return got


def test_a_remembered_voice_names_its_owners_next_meeting_and_can_be_undone_and_forgotten(api: Coordinator) -> None:
    first = meeting(api, "u1", {"S1": (DANA, 12.0), "S2": (LEE, 8.0)})
    status, body = call(
        api, {"action": "rename_speaker", "session_id": first, "speaker": "S1", "name": "Dana", "remember": True}
    )
    assert status == 200, body
    assert body["speakers"] == {"S1": "Dana", "S2": "S2"}
    assert body["voice"]["name"] == "Dana" and body["voice"]["dimensions"] == DIM and "embedding" not in body["voice"]
    status, listed = call(api, {"action": "list_voices", "user_id": "u1"})
    assert status == 200 and [v["name"] for v in listed["voices"]] == ["Dana"]
    assert "embedding" not in json.dumps(listed)

    # The next meeting: Dana speaks as S2 this time, a stranger as S1. Named before the notes.
    second = meeting(api, "u1", {"S1": (STRANGER, 15.0), "S2": (like(DANA), 9.0)})
    got = finish(api, second)
    assert got["speakers"] == {"S1": "S1", "S2": "Dana"}
    naming = got["named_by_voice"]["S2"]
    assert naming["name"] == "Dana" and naming["state"] == "named" and 0.9 < naming["score"] <= 1.0
    assert naming["voice_id"] == listed["voices"][0]["voice_id"]
    assert "Dana" in got["notes"]["speakers"].values()  # the notes were written with the name

    # The owner undoes it: label back, notes too, and re-running the naming does not bring it back.
    status, body = call(api, {"action": "undo_voice_name", "session_id": second, "speaker": "S2"})
    assert status == 200 and body["speakers"]["S2"] == "S2"
    api.ctx.workflow.steps.name_voices(second)  # type: ignore[attr-defined]
    status, got = call(api, {"action": "get_session", "session_id": second})
    assert got["speakers"]["S2"] == "S2" and got["named_by_voice"]["S2"]["state"] == NamingState.UNDONE
    assert "Dana" not in got["notes"]["speakers"].values()
    status, body = call(api, {"action": "undo_voice_name", "session_id": second, "speaker": "S2"})
    assert status == 409 and body["error"]["code"] == "not_named_by_voice"

    # Forget: gone from the library; a third meeting is not named.
    voice_id = listed["voices"][0]["voice_id"]
    status, body = call(api, {"action": "forget_voice", "user_id": "u1", "voice_id": voice_id})
    assert status == 200 and body["forgotten"] is True
    assert call(api, {"action": "list_voices", "user_id": "u1"})[1]["voices"] == []
    third = meeting(api, "u1", {"S1": (like(DANA, seed=5), 9.0)})
    assert finish(api, third)["speakers"] == {"S1": "S1"}
    status, body = call(api, {"action": "forget_voice", "user_id": "u1", "voice_id": voice_id})
    assert status == 404 and body["error"]["code"] == "unknown_voice"


def test_one_owners_voices_are_never_used_in_another_owners_sessions(api: Coordinator) -> None:
    first = meeting(api, "u1", {"S1": (DANA, 12.0)})
    assert (
        call(api, {"action": "rename_speaker", "session_id": first, "speaker": "S1", "name": "Dana", "remember": True})[
            0
        ]
        == 200
    )
    other = meeting(api, "u2", {"S1": (like(DANA), 12.0)})  # the very same voice, in u2's meeting
    got = finish(api, other)
    assert got["speakers"] == {"S1": "S1"} and got["named_by_voice"] == {}


def test_users_see_and_forget_only_their_own_voices(settings: Settings, tmp_path: Path) -> None:
    callers = {"Bearer alice": Caller("alice", "authenticated"), "Bearer bob": Caller("bob", "authenticated")}

    def authenticate(headers: Mapping[str, str]) -> Caller:
        try:
            return callers[headers.get("authorization", "")]
        except KeyError:
            raise PermissionError("unknown token") from None

    ingest = RtmpRelay(IngestHub(EmbeddedStream(tmp_path / "x.db")), "127.0.0.1", 0)
    api = Coordinator(
        dataclasses.replace(
            build_local_context(settings, EmbeddedLauncher(ingest, "127.0.0.1")), authenticate=authenticate
        )
    )
    alice, bob = {"authorization": "Bearer alice"}, {"authorization": "Bearer bob"}
    sid = meeting(api, "alice", {"S1": (DANA, 12.0)}, alice)
    status, body = call(
        api, {"action": "rename_speaker", "session_id": sid, "speaker": "S1", "name": "Dana", "remember": True}, alice
    )
    assert status == 200
    voice_id = body["voice"]["voice_id"]
    assert [v["name"] for v in call(api, {"action": "list_voices"}, alice)[1]["voices"]] == ["Dana"]
    assert call(api, {"action": "list_voices"}, bob)[1]["voices"] == []
    status, body = call(api, {"action": "list_voices", "user_id": "alice"}, bob)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = call(api, {"action": "forget_voice", "voice_id": voice_id}, bob)
    assert status == 404 and body["error"]["code"] == "unknown_voice"
    assert call(api, {"action": "forget_voice", "voice_id": voice_id}, alice)[0] == 200


def test_remember_refuses_clearly_and_renames_nothing(api: Coordinator) -> None:
    sid = meeting(api, "u1", {"S1": (DANA, 1.5), "S2": (LEE, 9.0)})
    status, body = call(
        api, {"action": "rename_speaker", "session_id": sid, "speaker": "S1", "name": "Dana", "remember": True}
    )
    assert status == 409 and body["error"]["code"] == "voice_not_remembered" and "1.5 s" in body["error"]["message"]
    status, body = call(
        api, {"action": "rename_speaker", "session_id": sid, "speaker": "S2", "name": "Lee", "remember": "yes"}
    )
    assert status == 400 and body["error"]["code"] == "invalid_field"
    assert call(api, {"action": "get_session", "session_id": sid})[1]["speakers"] == {"S1": "S1", "S2": "S2"}
    assert call(api, {"action": "list_voices", "user_id": "u1"})[1]["voices"] == []


def test_an_owner_rename_overrides_a_name_given_by_voice(api: Coordinator) -> None:
    first = meeting(api, "u1", {"S1": (DANA, 12.0)})
    body = {"action": "rename_speaker", "session_id": first, "speaker": "S1", "name": "Dana", "remember": True}
    assert call(api, body)[0] == 200
    second = meeting(api, "u1", {"S1": (like(DANA), 12.0)})
    assert finish(api, second)["named_by_voice"]["S1"]["state"] == "named"
    body = {"action": "rename_speaker", "session_id": second, "speaker": "S1", "name": "Dana K."}
    assert call(api, body)[0] == 200
    got = call(api, {"action": "get_session", "session_id": second})[1]
    assert got["speakers"] == {"S1": "Dana K."} and got["named_by_voice"]["S1"]["state"] == "undone"


def test_naming_again_merges_into_the_same_voice_and_spares_names_the_owner_gave(api: Coordinator) -> None:
    one = meeting(api, "u1", {"S1": (DANA, 12.0)})
    two = meeting(api, "u1", {"S1": (like(DANA, seed=7), 12.0), "S2": (like(DANA, seed=8), 6.0)})
    for sid in (one, two):
        assert (
            call(
                api, {"action": "rename_speaker", "session_id": sid, "speaker": "S1", "name": "Dana", "remember": True}
            )[0]
            == 200
        )
    voices = call(api, {"action": "list_voices", "user_id": "u1"})[1]["voices"]
    assert len(voices) == 1 and voices[0]["seconds"] == 24.0
    # S1 already carries "Dana" (the owner's name): S2 is not named Dana a second time.
    got = finish(api, two)
    assert got["speakers"] == {"S1": "Dana", "S2": "S2"} and got["named_by_voice"] == {}


# --------------------------------------------------------------------------- CLI


def test_cli_rename_remember_list_undo_forget(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbot.cli import main

    monkeypatch.setenv("FLOWBOT_DIARIZATION", settings.diarization.value)  # the same embedding model
    ingest = RtmpRelay(IngestHub(EmbeddedStream(settings.data_dir / "x.db")), "127.0.0.1", 0)
    api = Coordinator(build_local_context(settings, EmbeddedLauncher(ingest, "127.0.0.1")))
    first = meeting(api, "local", {"S1": (DANA, 12.0)})
    second = meeting(api, "local", {"S1": (like(DANA), 12.0)})
    dd = ["--data-dir", str(settings.data_dir)]
    assert main([*dd, "rename-speaker", first, "S1", "Dana", "--remember"]) == 0
    assert "remembered 'Dana'" in capsys.readouterr().out
    assert main([*dd, "voices", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [v["name"] for v in listed] == ["Dana"]
    api.ctx.workflow.steps.name_voices(second)  # type: ignore[attr-defined]
    assert api.ctx.transcripts.speakers(second) == {"S1": "Dana"}
    assert main([*dd, "voices", "undo", second, "S1"]) == 0
    assert api.ctx.transcripts.speakers(second) == {"S1": "S1"}
    assert main([*dd, "voices", "forget", listed[0]["voice_id"]]) == 0
    assert main([*dd, "voices", "forget", listed[0]["voice_id"]]) == 2
    assert main([*dd, "rename-speaker", first, "S7", "X"]) == 2
    capsys.readouterr()
    assert main([*dd, "voices", "list"]) == 0 and capsys.readouterr().out == ""


def test_transcribe_user_makes_the_file_session_the_owners_and_keeps_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from stores.sqlite import SqliteSessionStore
    from testkit.speech import say, write_wav

    wav = write_wav(tmp_path / "hello.wav", say("Good morning everyone, let's start the meeting.", "slt", tmp_path))
    data = tmp_path / "data"
    env = {**os.environ, "FLOWBOT_DIARIZATION": "none", "FLOWBOT_DATA_DIR": str(data)}
    proc = subprocess.run(
        [sys.executable, "-m", "flowbot.cli", "transcribe", str(wav), "--user", "alice", "--format", "json", "-q"],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    sid = json.loads(proc.stdout)["session_id"]
    # Without --data-dir a one-off run keeps nothing; with --user it stays in FLOWBOT_DATA_DIR, the owner's.
    assert SqliteSessionStore(data / "flowbot.db").get(sid).user_id == "alice"


def test_live_naming_after_a_committed_window_names_only_the_owners_voices(tmp_path: Path) -> None:
    from processor.live_voices import LiveVoiceNaming
    from stores.base import Session
    from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore
    from stores.voice_naming import Voices

    db = tmp_path / "flowbot.db"
    transcripts, sessions, lib = SqliteTranscriptStore(db), SqliteSessionStore(db), SqliteVoiceLibrary(db)
    lib.save_voice(Voice("v1", "alice", "Dana", "offline", DANA, 20.0, 1.0, 1.0))
    hook = LiveVoiceNaming(Voices(lib, transcripts, "offline", min_score=0.7, min_seconds=4.0), sessions)
    for sid, owner in (("s-alice", "alice"), ("s-bob", "bob")):
        sessions.create(Session(sid, "m", owner, "", "k-" + sid))
        seg = TranscriptSegment(sid, 0, 0, 0.0, 1.0, "Hi.", "S1")
        # After the first window S1 has 2 s of Dana's voice: too little to put a name on yet.
        transcripts.commit_window(
            WindowRecord(sid, 0, 0, 16000), [seg], SessionProgress(sid, 1, 16000, None, state({"S1": (DANA, 2.0)}))
        )
        hook(sid)
        assert transcripts.speakers(sid) == {"S1": "S1"}
        transcripts.save_progress(SessionProgress(sid, 2, 32000, None, state({"S1": (like(DANA), 6.0)})))
        hook(sid)
    assert transcripts.speakers("s-alice") == {"S1": "Dana"} and hook.named == {"s-alice": ["S1"]}
    assert transcripts.speakers("s-bob") == {"S1": "S1"}  # Bob's session never gets Alice's voices
    hook("no-such-session")  # a stream without a session record: nothing to do, no error

    class Broken(SqliteVoiceLibrary):
        def voices(self, owner_id: str, *, model: str | None = None) -> list[Voice]:
            raise RuntimeError("library down")

    broken = LiveVoiceNaming(Voices(Broken(db), transcripts, "offline", min_score=0.7, min_seconds=4.0), sessions)
    broken("s-bob")  # logged, not raised: the window is committed either way


def test_one_owners_voice_never_names_another_owners_speaker_live_or_at_the_end_on_sqlite(tmp_path: Path) -> None:
    """As tests/supabase/test_supabase_voices.py does on Supabase: the processor's live naming and the
    end-of-meeting workflow, wired by their own factories, name Alice's meetings with Alice's voice
    and leave Bob's alone, where Dana's very voice speaks too."""
    from control.workflow import default_steps
    from processor.build import live_voice_naming
    from stores.base import Session
    from stores.factory import session_store, transcript_store, voice_library

    settings = Settings.from_env({}, data_dir=tmp_path / "data", diarization="offline")
    store, lib, sessions = transcript_store(settings), voice_library(settings), session_store(settings)
    lib.save_voice(Voice("v-dana", "alice", "Dana", "offline", DANA, 20.0, 1.0, 1.0))
    meetings = {(owner, when): f"s-{owner}-{when}" for owner in ("alice", "bob") for when in ("live", "end")}
    for (owner, _), sid in meetings.items():
        sessions.create(Session(sid, "m", owner, "", "k-" + sid))
        seg = TranscriptSegment(sid, 0, 0, 0.0, 1.0, "Hi.", "S1")
        progress = SessionProgress(sid, 1, 16000, None, state({"S1": (like(DANA), 9.0)}))
        store.commit_window(WindowRecord(sid, 0, 0, 16000), [seg], progress)
    hook = live_voice_naming(settings, store)
    assert hook is not None
    steps = default_steps(sessions, store, settings)
    for owner in ("alice", "bob"):
        hook(meetings[owner, "live"])
        steps.generate_notes(meetings[owner, "end"])
    for (owner, _), sid in meetings.items():
        expected = "Dana" if owner == "alice" else "S1"
        assert store.speakers(sid) == {"S1": expected}, (sid, "Alice's voice named Bob's speaker")
        assert [n.name for n in lib.namings(sid).values()] == (["Dana"] if owner == "alice" else [])


def test_a_name_given_by_voice_live_follows_its_speaker_through_the_end_of_meeting_relabel(api: Coordinator) -> None:
    """Live naming named S1 "Dana"; at the end the reconciliation merged S1 into S3, and the name
    went with the speech (``SpeakerRelabel.carry_names``). The naming must go too: before, S3 read
    "Dana" with no record that a voice gave it, so the owner could not undo it (409) and the page
    showed it as the owner's own name."""
    from contracts.segments import SpeakerRelabel

    first = meeting(api, "u1", {"S1": (DANA, 12.0)})
    body = {"action": "rename_speaker", "session_id": first, "speaker": "S1", "name": "Dana", "remember": True}
    assert call(api, body)[0] == 200
    second = meeting(api, "u1", {"S1": (like(DANA), 6.0), "S3": (like(DANA, seed=4), 9.0), "S4": (LEE, 9.0)})
    voices = api.ctx.voices
    assert voices is not None
    session = api.ctx.sessions.get(second)
    assert [n.label for n in voices.name_session(session)] == ["S1"]  # live, after the window
    merged = SpeakerRelabel(windows={0: {"S1": "S3"}}, before=("S1", "S3", "S4"), after=("S3", "S4"))
    assert api.ctx.transcripts.relabel_speakers(second, merged)
    got = finish(api, second)
    assert got["speakers"] == {"S3": "Dana", "S4": "S4"}
    assert got["named_by_voice"]["S3"]["name"] == "Dana" and got["named_by_voice"]["S3"]["state"] == "named"
    status, body = call(api, {"action": "undo_voice_name", "session_id": second, "speaker": "S3"})
    assert status == 200, body
    assert body["speakers"] == {"S3": "S3", "S4": "S4"}

    # An undo follows the speech too: the owner said S1 was not Dana, so S3, which now holds
    # S1's speech, is not named Dana at the end either.
    third = meeting(api, "u1", {"S1": (like(DANA), 6.0), "S3": (like(DANA, seed=4), 9.0)})
    assert [n.label for n in voices.name_session(api.ctx.sessions.get(third))] == ["S1"]
    assert call(api, {"action": "undo_voice_name", "session_id": third, "speaker": "S1"})[0] == 200
    merged = SpeakerRelabel(windows={0: {"S1": "S3"}}, before=("S1", "S3"), after=("S3",))
    assert api.ctx.transcripts.relabel_speakers(third, merged)
    got = finish(api, third)
    assert got["speakers"] == {"S3": "S3"} and got["named_by_voice"]["S3"]["state"] == "undone"


def test_live_naming_remembers_a_bounded_number_of_session_owners(tmp_path: Path) -> None:
    """A processor runs for days: the hook kept every session it ever saw (and its named labels)."""
    from processor.live_voices import LiveVoiceNaming
    from stores.base import Session
    from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore
    from stores.voice_naming import Voices

    db = tmp_path / "flowbot.db"
    reads: list[str] = []

    class Counting(SqliteSessionStore):
        def get(self, session_id: str) -> Session:
            reads.append(session_id)
            return super().get(session_id)

    sessions = Counting(db)
    voices = Voices(SqliteVoiceLibrary(db), SqliteTranscriptStore(db), "offline", min_score=0.7, min_seconds=4.0)
    hook = LiveVoiceNaming(voices, sessions, max_sessions=2)
    for sid in ("s1", "s2", "s3"):
        sessions.create(Session(sid, "m", "alice", "", "k-" + sid))
    for sid in ("s1", "s1", "s2", "s1", "s3", "s1", "s2"):
        hook(sid)
    # s1 stays (used again before s3 came); s2 was the oldest when s3 came, so it is read again.
    assert reads == ["s1", "s2", "s3", "s2"]

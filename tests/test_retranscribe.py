"""Re-transcription: a finished meeting again from its archived audio, as a new revision."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import WindowRecord
from contracts.settings import Settings
from control.api import Coordinator
from control.context import build_local_context
from flowbot.cli import main
from flowbot.launch import EmbeddedLauncher
from flowbot.pipeline import transcribe_file
from flowbot.retranscribe import BackgroundRetranscriber, RetranscribeError, archived_audio, plan_revision
from flowbot.wer import wer
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from stores.archive import LocalArchive
from stores.base import Session, SessionProgress, SessionState
from stores.factory import session_store, transcript_store
from streams.embedded import EmbeddedStream
from tests.diarization.real_sample import sample_folder


def test_archived_windows_are_put_back_on_the_timeline(settings: Settings) -> None:
    transcripts, archive = transcript_store(settings), LocalArchive(settings.data_dir / "archive")
    one, three = np.full(16000, 7, np.int16), np.full(8000, -3, np.int16)
    for idx, start, pcm in ((0, 0, one), (2, 32000, three)):  # window 1 failed without audio
        uri = archive.put("s", idx, pcm)
        transcripts.commit_window(
            WindowRecord("s", idx, start, start + len(pcm), audio_uri=uri), [], SessionProgress("s", idx + 1, 0)
        )
    pcm = archived_audio(transcripts, archive, "s")
    assert len(pcm) == 40000
    assert (pcm[:16000] == 7).all() and (pcm[16000:32000] == 0).all() and (pcm[32000:] == -3).all()
    with pytest.raises(RetranscribeError, match="no archived audio"):
        archived_audio(transcripts, archive, "other")


def test_only_a_finished_meeting_is_retranscribed(settings: Settings) -> None:
    sessions = session_store(settings)
    sessions.create(Session("live-1", "m", "u", "t", "k1", state=SessionState.LIVE))
    with pytest.raises(RetranscribeError, match="only a finished meeting"):
        plan_revision(sessions, "live-1", model=None, language=None)
    with pytest.raises(RetranscribeError, match="no session"):
        plan_revision(sessions, "nope", model=None, language=None)
    sessions.create(Session("done-1", "m", "u", "t", "k2", state=SessionState.COMPLETED))
    sessions.create(Session("done-1-r2", "m", "u", "t", "k3", SessionState.COMPLETED, revision=2, revision_of="done-1"))
    # Revising any revision makes the next one of the same recording.
    nxt = plan_revision(sessions, "done-1-r2", model="bundled:tiny.en", language="en")
    assert (nxt.revision, nxt.revision_of, nxt.asr_model, nxt.asr_language) == (3, "done-1", "bundled:tiny.en", "en")


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"model": "/etc/passwd"}, 400),  # API callers name models, never paths
        ({"language": "english; rm"}, 400),
        ({}, 501),  # no processor in this process: flowbot retranscribe does it
    ],
)
def test_retranscribe_action_refusals(api: Coordinator, extra: dict, status: int) -> None:
    api.ctx.sessions.create(Session("done-1", "m", "u", "t", "k", state=SessionState.COMPLETED))
    resp = api.handle("POST", {}, json.dumps({"action": "retranscribe", "session_id": "done-1", **extra}).encode())
    assert resp.status == status, resp.body


@pytest.mark.slow
def test_a_real_meeting_retranscribed_keeps_the_old_revision_and_gets_new_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data")  # the default diarization
    rtmp = RtmpRelay(IngestHub(EmbeddedStream(settings.data_dir / "stream.db")), "127.0.0.1", 0)
    api = Coordinator(build_local_context(settings, EmbeddedLauncher(rtmp, "127.0.0.1")))
    sample = sample_folder() / "sample.wav"
    first = transcribe_file(sample, settings, session_id="meeting-1")
    assert first.state == "completed" and first.segments
    before = transcript_store(settings).segments("meeting-1")

    # The API action (as flowbot serve wires it): answers at once, transcribes on a thread.
    ctx = dataclasses.replace(api.ctx, retranscribe=BackgroundRetranscriber(settings))
    body = {"action": "retranscribe", "session_id": "meeting-1", "model": "bundled:tiny.en", "language": "en"}
    resp = Coordinator(ctx).handle("POST", {}, json.dumps(body).encode())
    assert resp.status == 200, resp.body
    assert (resp.body["revision"], resp.body["revision_of"], resp.body["state"]) == (2, "meeting-1", "live")
    assert ctx.retranscribe is not None
    ctx.retranscribe.join(resp.body["session_id"], timeout=600)  # type: ignore[attr-defined]

    sessions, transcripts = session_store(settings), transcript_store(settings)
    second = sessions.get(resp.body["session_id"])
    assert second.state == SessionState.COMPLETED and second.asr_model == "bundled:tiny.en"
    after = transcripts.segments(second.session_id)
    # Same model, same audio: the same words (a margin for window cuts, measured 0.0 here).
    text = " ".join(s.text for s in before)
    assert wer(text, " ".join(s.text for s in after)) <= 0.1
    assert transcripts.get_notes(second.session_id) is not None
    assert len(transcripts.speakers(second.session_id)) == len(first.speakers) == 2
    # The old revision is untouched.
    assert transcripts.segments("meeting-1") == before
    assert sessions.get("meeting-1").revision == 1

    # The command line makes revision 3 of the same recording.
    assert main(["--data-dir", str(settings.data_dir), "retranscribe", "meeting-1", "-q"]) == 0
    third = capsys.readouterr().out.strip()
    assert sessions.get(third).revision == 3 and sessions.get(third).revision_of == "meeting-1"
    assert main(["--data-dir", str(settings.data_dir), "retranscribe", Path("missing").name, "-q"]) == 2

"""The hallucination guard (issue 11 #2): clear speech is never silently dropped.

faster-whisper reports one compression ratio for a whole decoded 30 s chunk, so
dropping segments above 2.4 dropped confident, repetitive speech (agendas,
numbers) while the window said "done". Loops are judged inside each segment now,
and every dropped segment is counted up to ``get_session``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import Word
from contracts.settings import Settings
from control.api import Coordinator
from control.context import build_local_context
from processor.asr import AsrOptions, AsrResult, AsrSegment, Transcriber, drop_reason, guard, repetition_loop
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from producer.framer import SessionFramer
from stores.archive import NoArchive
from stores.base import Session, SessionState
from stores.sqlite import SqliteTranscriptStore
from streams.embedded import EmbeddedStream
from testkit.speech import conversation

OPTS = AsrOptions()
#: Confident, repetitive speech: issue 11's reproduction (13 sentences came out as 4).
READ_OUT = [(0, f"Sentence number {n}. The team reviewed item {n} today.") for n in range(1, 14)]


def seg(text: str, *, ratio: float = 1.2, logprob: float = -0.2, no_speech: float = 0.01, p: float = 0.9) -> AsrSegment:
    words = tuple(Word(i * 0.3, i * 0.3 + 0.25, " " + w, p) for i, w in enumerate(text.split()))
    return AsrSegment(0.0, len(words) * 0.3, text, words, logprob, no_speech, ratio)


@pytest.mark.parametrize(
    "text",
    [
        "Thank you. Thank you. Thank you. Thank you. Thank you.",
        "so so so so so so so so so so",
        "We will see. I'm going to go now, I'm going to go now, I'm going to go now, I'm going to go now",
    ],
)
def test_loops_inside_a_segment_are_dropped(text: str) -> None:
    assert repetition_loop(text, min_repeats=4, min_words=8, max_ngram=8) is not None
    assert drop_reason(seg(text), OPTS) == "repetition_loop"


@pytest.mark.parametrize(
    "text",
    [
        # Repeats words without looping: a read-out.
        "Sentence No. 1, the team reviewed Item 1 today. Sentence No. 2, the team reviewed Item 2 today. "
        "Sentence No. 3, the team reviewed Item 3 today. Sentence No. 4, the team reviewed Item 4 today.",
        "No, no, no, no. That is not what we agreed.",
        "Thank you. Thank you. Thank you.",
        "one two three, one two three, four five six",
    ],
)
def test_repetitive_speech_is_kept_even_with_a_high_chunk_compression_ratio(text: str) -> None:
    assert drop_reason(seg(text, ratio=3.5, logprob=-0.14), OPTS) is None


def test_every_drop_is_counted_by_reason() -> None:
    result = guard(
        [
            seg("Hello there, everyone."),
            seg("thank you " * 8),
            seg("Mm.", no_speech=0.9, logprob=-1.4),
            seg("uh huh", p=0.05),
        ],
        OPTS,
    )
    assert [s.text for s in result] == ["Hello there, everyone."]
    assert result.dropped == Counter({"repetition_loop": 1, "no_speech": 1, "low_confidence": 1})


_NUMBERS = "one two three four five six seven eight nine ten eleven twelve thirteen".split()


def _numbers(text: str, word: str) -> set[int]:
    """The numbers a transcript names after ``word``, as digits or words (a re-decode may spell them)."""
    found = re.findall(rf"{word}\W+(\d+|[a-z]+)", text.lower())
    return {int(n) if n.isdigit() else _NUMBERS.index(n) + 1 for n in found if n.isdigit() or n in _NUMBERS}


@pytest.mark.slow
def test_confident_repetitive_speech_survives_the_engine(tmp_path: Path, speech_dir: Path, transcriber: object) -> None:
    """Issue 11 #2, end to end: 13 flite sentences through the windowed engine, all 13 come out."""
    audio, _turns = conversation(READ_OUT, speech_dir, voices=("slt",))
    stream = EmbeddedStream(tmp_path / "s.db")
    framer = SessionFramer(stream, "readout")
    framer.push(audio)
    framer.end()
    store = SqliteTranscriptStore(tmp_path / "t.db")
    parts = EngineParts(
        transcriber=transcriber,  # type: ignore[arg-type]
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=store,
        archive=NoArchive(),
        policy=WindowPolicy(30, 15),
    )
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 10_000), _NoCheckpoint())
    text = " ".join(s.text for s in store.segments("readout"))
    # Every sentence is there (issue 11 kept 4 of 13), each named by its sentence number or
    # its item number; both numbers come out right in at least 12 of 13. Under CTranslate2's
    # AVX2 kernels tiny.en hears "item 12" as "Item Well" (AVX-512: "Item 12"): a misheard
    # word, not a dropped segment.
    sentences, items = _numbers(text, "sentence (?:number|no)"), _numbers(text, "item")
    assert sentences | items == set(range(1, 14)), text
    assert len(sentences & items) >= 12, text
    assert all(w.status == "done" for w in store.windows("readout"))


class _NoCheckpoint:
    def checkpoint(self, sequence_number: str | None = None) -> None:
        pass


class _Dropping(Transcriber):
    """A transcriber whose guard dropped two segments of every window with speech."""

    def transcribe(self, audio: np.ndarray, **kw: object) -> AsrResult:
        kept = [seg("We decided to ship on Friday.")]
        return AsrResult(kept, Counter({"repetition_loop": 1, "no_speech": 1}))


def test_dropped_segments_are_visible_through_get_session(tmp_path: Path, speech_dir: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", diarization="none")

    class NoLaunch:
        def launch(self, session: Session) -> object:
            raise AssertionError

        def stop(self, session: Session) -> None:
            pass

    ctx = build_local_context(settings, NoLaunch())  # type: ignore[arg-type]
    ctx.sessions.create(Session("s1", "m", "u", "t", "key", state=SessionState.LIVE))
    parts = EngineParts(
        transcriber=_Dropping(),
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=ctx.transcripts,
        archive=NoArchive(),
        policy=WindowPolicy(10, 5),
    )
    stream = EmbeddedStream(tmp_path / "s.db")
    framer = SessionFramer(stream, "s1")
    framer.push(conversation(READ_OUT[:5], speech_dir, voices=("slt",))[0])  # speech, so windows reach ASR
    framer.end()
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 1000), _NoCheckpoint())
    windows = ctx.transcripts.windows("s1")
    with_text = [w for w in windows if w.dropped_segments]
    assert with_text and all(w.dropped_segments == 2 for w in with_text)
    resp = Coordinator(ctx).handle("POST", {}, b'{"action": "get_session", "session_id": "s1"}')
    assert resp.status == 200
    assert resp.body["progress"]["segments_dropped"] == 2 * len(with_text) == proc.counters["dropped_segments"]

"""``flowbot transcribe``'s batched decoding: a file's windows through faster-whisper's batched pipeline.

Real recorded speech (the pocketsphinx clips of the real-speech set) and the
real bundled model: batching must keep the windows (cuts, contiguity), the
words within tolerance, and a replay from a checkpoint must rewrite the rows
of an uninterrupted run.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import Word
from flowbot.wer import wer
from processor.asr import AsrSegment
from processor.batched_asr import BatchingTranscriber, sentences
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from producer.decode import read_pcm
from streams.embedded import EmbeddedStream
from tests.test_engine import ListCheckpointer, _frames, _parts, _run, _text

ROOT = Path(__file__).resolve().parents[1]
#: Windows short enough that 40 s of speech spans several, cut at real pauses.
POLICY = WindowPolicy(12, 6)


@pytest.fixture(scope="module")
def batched(transcriber: object) -> Iterator[BatchingTranscriber]:
    batching = BatchingTranscriber(transcriber)  # type: ignore[arg-type]
    yield batching
    batching.stop()


@pytest.fixture(scope="module")
def real_speech(request: pytest.FixtureRequest) -> tuple[np.ndarray, str]:
    """The first 40 s of the real-speech set's ``concat`` meeting (six real speakers) and its reference."""
    from testkit.corpus import build

    rec = build(Path(request.config.cache.mkdir("flowbot-realspeech")))["concat"]
    limit = 40.0
    text = " ".join(u.text for u in sorted(rec.utterances, key=lambda u: u.start) if u.end <= limit)
    return read_pcm(str(rec.path))[: int(limit * 16000)], text


def _batched_parts(tmp: Path, batched: BatchingTranscriber, windows: int) -> EngineParts:
    parts = _parts(tmp, batched, POLICY)
    parts.batch_windows = windows
    return parts


def _rows(parts: EngineParts, session: str) -> list[tuple[int, int, float, float, str]]:
    return [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in parts.store.segments(session)]


def test_batched_windows_match_sequential_decoding(
    tmp_path: Path, real_speech: tuple[np.ndarray, str], transcriber: object, batched: BatchingTranscriber
) -> None:
    pcm, reference = real_speech
    records = _frames(EmbeddedStream(tmp_path / "s.db"), "real", pcm)
    sequential = _run(_parts(tmp_path / "seq", transcriber, POLICY), records)
    calls = batched.calls
    together = _run(_batched_parts(tmp_path / "batch", batched, 4), records)

    seq_windows = sequential.parts.store.windows("real")
    windows = together.parts.store.windows("real")
    assert len(windows) >= 3
    assert together.counters["batched_windows"] >= 2, "several windows must share one model call"
    assert batched.calls - calls < len(windows)
    # Contiguous, within the limit, and cut where the sequential run cut (pauses, not transcripts).
    assert windows[0].start_sample == 0 and windows[-1].end_sample == len(pcm)
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    assert all(w.end_sample - w.start_sample <= POLICY.max_samples for w in windows)
    if sequential.counters["cut_forced"] == 0:
        assert [(w.start_sample, w.end_sample) for w in windows] == [
            (w.start_sample, w.end_sample) for w in seq_windows
        ]
    # Same words within tolerance, and no worse against the reference beyond noise.
    seq_text, batch_text = _text(sequential.parts.store, "real"), _text(together.parts.store, "real")  # type: ignore[arg-type]
    print(f"WER sequential {wer(reference, seq_text):.3f}, batched {wer(reference, batch_text):.3f}")
    assert wer(seq_text, batch_text) < 0.15
    assert wer(reference, batch_text) <= wer(reference, seq_text) + 0.05
    # Word timestamps on the session timeline, inside their window (Whisper may stretch the
    # last word past the end of the audio by a frame or so), in order.
    spans = {w.window_index: (w.start_sample / 16000, w.end_sample / 16000) for w in windows}
    segments = together.parts.store.segments("real")
    assert segments and all(s.words for s in segments)
    for seg in segments:
        lo, hi = spans[seg.window_index]
        assert all(lo - 0.3 <= w.start <= w.end <= hi + 0.3 for w in seg.words), seg
    starts = [w.start for s in segments for w in s.words]
    assert starts == sorted(starts)
    # Sentence-sized rows, as the sequential path writes, not one row per 12 s clip.
    assert len(segments) >= len(windows) + 2


def test_batched_replay_rewrites_identical_rows(
    tmp_path: Path, real_speech: tuple[np.ndarray, str], batched: BatchingTranscriber
) -> None:
    pcm, _ = real_speech
    records = _frames(EmbeddedStream(tmp_path / "s.db"), "replay", pcm)
    reference = _run(_batched_parts(tmp_path / "ref", batched, 2), records)

    parts = _batched_parts(tmp_path, batched, 2)
    first = ShardProcessor(parts)
    first.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    first.process_records(records[:30], ckpt)  # 30 s buffered: one batch of two windows committed
    assert parts.store.windows("replay"), "a batch must be committed after 30 s"
    first.lease_lost()
    second = ShardProcessor(parts)
    start = ckpt.values[-1] if ckpt.values else 0
    second.initialize("shard-0", str(start))
    second.process_records([r for r in records if r.seq > start], ListCheckpointer())
    assert _rows(parts, "replay") == _rows(reference.parts, "replay")
    assert [(w.start_sample, w.end_sample) for w in parts.store.windows("replay")] == [
        (w.start_sample, w.end_sample) for w in reference.parts.store.windows("replay")
    ]


def test_sentences_split_a_clip_at_sentence_ends() -> None:
    words = (
        Word(0.0, 0.4, " Hello", 0.9),
        Word(0.4, 0.8, " there.", 0.9),
        Word(1.0, 1.3, " How", 0.9),
        Word(1.3, 1.6, " are", 0.9),
        Word(1.6, 2.0, " you?", 0.9),
        Word(2.2, 2.6, " Fine", 0.9),
    )
    seg = AsrSegment(0.0, 2.6, "Hello there. How are you? Fine", words, -0.2, 0.01, 1.2)
    parts = sentences(seg)
    assert [p.text for p in parts] == ["Hello there.", "How are you?", "Fine"]
    assert [(p.start, p.end) for p in parts] == [(0.0, 0.8), (1.0, 2.0), (2.2, 2.6)]
    assert [w for p in parts for w in p.words] == list(words)
    assert sentences(AsrSegment(0.0, 1.0, "No words", (), -0.2, 0.0, 1.0))[0].text == "No words"


def test_diarization_off_does_not_import_torch(tmp_path: Path) -> None:
    """torch's import cost ``flowbot transcribe`` 2-6 s with nothing to use it for."""
    code = (
        "import sys; from pathlib import Path; from contracts.settings import Settings;"
        "from processor.build import build_engine_parts;"
        f"build_engine_parts(Settings.from_env({{}}, data_dir=Path({str(tmp_path)!r}), diarization='none',"
        " interim_seconds=0.0)); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_missed_finds_speech_the_decoder_skipped(real_speech: tuple[np.ndarray, str]) -> None:
    """The batched decoder (no timestamp tokens) can skip a sentence; the speech between words is found."""
    from processor.batched_asr import missed
    from processor.windowing import to_float

    audio = to_float(
        real_speech[0][: 11 * 16000]
    )  # "And Mr. John Dashwood ... for them." then "Ten of clubs. Go forward ..."
    first = AsrSegment(
        0.5, 7.6, "And Mr. John Dashwood", (Word(0.5, 1.2, " And", 0.9), Word(7.0, 7.6, " them.", 0.9)), -0.2, 0.0, 1.0
    )
    gaps = missed(audio, [first])
    # Inside the clip (between "And" and "them.") and after its last word.
    assert gaps == [(int(1.2 * 16000), int(7.0 * 16000)), (int(7.6 * 16000), len(audio))]
    # Words all along: nothing missed; nothing decoded at all: nothing to chase either.
    words = tuple(Word(t, t + 0.5, " w", 0.9) for t in np.arange(0.0, 11.0, 1.0))
    assert missed(audio, [AsrSegment(0.0, 11.0, "w", words, -0.2, 0.0, 1.0)]) == []
    assert missed(audio, []) == []

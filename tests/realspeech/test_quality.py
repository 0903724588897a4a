"""Issue 10 on real recorded speech: no word lost at a window join, the right speaker on every word.

Three recordings (testkit/corpus.py): pyannote's two-speaker telephone
sample, a six-speaker concatenation with short gaps, and over 60 s of speech
with every pause squeezed under 150 ms. The windowed pipeline is held to the
whole-file run of the same Whisper model (faster-whisper in one call).

Whisper decodes a window differently from the whole file wherever the audio it
hears changes, and CTranslate2's CPU kernels (AVX2 or AVX-512, picked per
machine; ``CT2_FORCE_CPU_ISA`` forces one) move single words too. So words are
judged only near a join, where windowing can lose them, and WER with the margin
below; both measured under both ISAs (issue 19, docs/quality.md).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.segments import Word
from contracts.settings import Settings
from flowbot.wer import wer
from processor.engine import EngineParts
from processor.rttm import parse_rttm
from processor.windowing import WindowPolicy, quiet_test, speech_spans
from testkit.corpus import SQUEEZED_PAUSE_S, Recording
from testkit.evaluate import Run, der, missing_words, run_pipeline, words_lost_at_joins

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("sample", "concat", "squeezed")
#: Windowed WER may exceed whole-file WER by this much on one recording. Measured
#: (windowed - whole, points; CTranslate2 AVX2 / AVX-512, 2 and 1 threads): sample 0.0 at
#: 30, 20 and 12 s windows; concat -1.0 to +2.0 (AVX-512: "Neither did I" and "oh" decoded
#: differently mid-window); squeezed -3.6 to -1.0. One word more than the worst is 2.6.
WER_MARGIN = 0.03


@pytest.mark.parametrize("name", NAMES)
def test_windowed_wer_no_worse_than_whole_file(
    name: str, recordings: dict[str, Recording], pipeline_runs: dict[str, Run], whole_file_runs: dict[str, Run]
) -> None:
    rec, run = recordings[name], pipeline_runs[name]
    windowed, whole = wer(rec.text, run.text), wer(rec.text, whole_file_runs[name].text)
    print(f"\n{name}: windowed WER {windowed:.2%} ({len(run.windows)} windows), whole-file {whole:.2%}")
    assert windowed <= whole + WER_MARGIN


@pytest.mark.parametrize("name", ("concat", "squeezed"))
def test_no_word_lost_near_a_join(
    name: str, recordings: dict[str, Recording], pipeline_runs: dict[str, Run], whole_file_runs: dict[str, Run]
) -> None:
    run = pipeline_runs[name]
    assert len(run.joins) >= 2, "the recording must make several windows"
    lost = words_lost_at_joins(recordings[name].text, whole_file_runs[name].words, run, reach=1.0)
    assert lost == [], f"lost near joins {run.joins}: {lost}"


def test_squeezed_speech_offers_no_pause_to_cut_at(
    recordings: dict[str, Recording], pipeline_runs: dict[str, Run]
) -> None:
    rec, run = recordings["squeezed"], pipeline_runs["squeezed"]
    audio = rec.audio()
    utts = sorted(rec.utterances, key=lambda u: u.start)
    assert utts[-1].end - utts[0].start >= 60.0
    # At the shortest pause the cutter tries, the processor's VAD hears at most a pause or
    # two, and those are quiet speech it misses (a soft "Oh, hello" on the telephone line),
    # which the cutter's energy check refuses.
    spans = speech_spans(audio, 150)
    assert len(spans) <= 3
    silent = quiet_test(audio)
    assert not any(silent((a[1] + b[0]) // 2) for a, b in itertools.pairwise(spans))
    assert SQUEEZED_PAUSE_S < 0.15
    # So every cut was forced, and each forced window carried its tail over.
    cuts = len(run.windows) - 1
    assert cuts >= 2 and run.counters.get("cut_forced") == cuts == run.counters.get("carried_windows")
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(run.windows))


def test_concatenation_keeps_its_speakers(recordings: dict[str, Recording], pipeline_runs: dict[str, Run]) -> None:
    """Six voices with short gaps: no speaker is invented from a fragment."""
    speakers = pipeline_runs["concat"].speakers
    assert 2 <= len(speakers) <= len(recordings["concat"].speaker_texts())


def _flowbot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWBOT_DIARIZATION": "offline", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [sys.executable, "-m", "flowbot.cli", *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=900
    )


def test_flowbot_transcribe_sample_two_speakers_every_word_and_rttm_der(
    tmp_path: Path, recordings: dict[str, Recording], whole_file_runs: dict[str, Run]
) -> None:
    """The README demo: exactly two speakers, every word whole-file Whisper finds, RTTM DER <= 10 %."""
    rec = recordings["sample"]
    data = tmp_path / "data"
    out = _flowbot("--data-dir", str(data), "transcribe", str(rec.path), "--format", "json", "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    speakers = {s["speaker"] for s in result["segments"]} | {
        w["speaker"] for s in result["segments"] for w in s["words"]
    }
    assert speakers == {"S1", "S2"}
    text = " ".join(s["text"] for s in result["segments"])
    assert "in new jersey now" in text.lower()
    words = [Word.from_dict(w) for s in result["segments"] for w in s["words"]]
    assert missing_words(rec.text, whole_file_runs["sample"].words, words) == []

    rttm = _flowbot("--data-dir", str(data), "transcript", result["session_id"], "--format", "rttm")
    assert rttm.returncode == 0, rttm.stderr[-3000:]
    turns = [(t.start, t.end, t.speaker) for t in parse_rttm(rttm.stdout)]
    score = der(rec.reference_turns(), turns)
    print(
        f"\nsample.wav RTTM DER {score['der']:.2%} (missed {score['missed']:.2%}, "
        f"false alarm {score['false_alarm']:.2%}, confusion {score['confusion']:.2%})"
    )
    assert score["der"] <= 0.10
    assert {t[2] for t in turns} == {"S1", "S2"}


@pytest.mark.parametrize("max_seconds", [20.0, 12.0])
def test_sample_cut_mid_conversation_keeps_two_speakers_and_every_word(
    max_seconds: float,
    recordings: dict[str, Recording],
    realspeech_settings: Settings,
    engine_parts: EngineParts,
    whole_file_runs: dict[str, Run],
) -> None:
    """Shorter windows force joins into the back-to-back telephone turns (the demo's old failure)."""
    rec = recordings["sample"]
    default = engine_parts.policy
    engine_parts.policy = WindowPolicy(max_seconds, max_seconds / 2)
    try:
        run = run_pipeline(rec, realspeech_settings, engine_parts)
    finally:
        engine_parts.policy = default
    assert run.joins, "the windows must join inside the conversation"
    assert run.speakers == {"S1", "S2"}
    # Every word whole-file Whisper finds near a join. Not every word anywhere: 11 s after
    # the join the last window decodes whole-file's "I don't hear that New Jersey now" without
    # "that" (AVX2), and "that in New Jersey" without "in" (AVX-512): other audio decoded, not
    # a loss at a join.
    assert words_lost_at_joins(rec.text, whole_file_runs["sample"].words, run, reach=1.0) == []
    assert wer(rec.text, run.text) <= wer(rec.text, whole_file_runs["sample"].text) + WER_MARGIN

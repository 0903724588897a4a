"""The hallucination guard, before and after issue 11, side by side in one run.

    .venv/bin/python -m bench.asr_guard [--runs 3] [--librivox DIR]

A (before): faster-whisper's temperature fallback triggered by a chunk
compression ratio above 2.4, and every segment above 2.4 dropped afterwards.
B (now): :class:`processor.asr.WhisperTranscriber` (fallback triggered by an
n-gram loop inside a segment; only loops that survive it are dropped).

Both decode the same ~30 s windows (cut at silences, as the engine does) of:
the 13-sentence read-out of issue 11 (flite), the planning meeting (flite),
pyannote's ``sample.wav`` (a real telephone call, reference from its
``sample.stm``) and, given ``--librivox`` (pocketsphinx's sdist
``test/data/librivox``), LibriVox read speech with its ``.txt`` references.
Prints WER per side and run; sampling at higher temperatures is random, so
several runs show the spread.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def windows(audio: np.ndarray) -> list[np.ndarray]:
    from processor.windowing import WindowPolicy, choose_cut

    policy = WindowPolicy(30, 15)
    out = []
    while audio.size > policy.max_samples:
        cut = choose_cut(audio[: policy.max_samples], policy).at
        out.append(audio[:cut])
        audio = audio[cut:]
    return [*out, audio]


def corpora(librivox: Path | None) -> dict[str, tuple[np.ndarray, str]]:
    import importlib.util

    from processor.windowing import to_float
    from producer.decode import read_pcm
    from testkit.speech import MEETING, conversation

    tmp = Path(tempfile.mkdtemp(prefix="asr-guard-"))
    readout = [(0, f"Sentence number {n}. The team reviewed item {n} today.") for n in range(1, 14)]
    out: dict[str, tuple[np.ndarray, str]] = {}
    audio, turns = conversation(readout, tmp, voices=("slt",))
    out["readout"] = (to_float(audio), " ".join(t.text for t in turns))
    audio, turns = conversation(MEETING, tmp)
    out["meeting"] = (to_float(audio), " ".join(t.text for t in turns))
    spec = importlib.util.find_spec("pyannote.audio")
    if spec and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "sample"
        ref = " ".join(line.split(maxsplit=5)[5] for line in (folder / "sample.stm").read_text().splitlines())
        out["sample.wav"] = (to_float(read_pcm(str(folder / "sample.wav"))), ref)
    if librivox:
        wavs = sorted(librivox.glob("*.wav"))
        pcm = np.concatenate([read_pcm(str(w)) for w in wavs])
        out["librivox"] = (to_float(pcm), " ".join(w.with_suffix(".txt").read_text().strip() for w in wavs))
    return out


def legacy(transcriber: object) -> Callable[[np.ndarray], str]:
    """The guard as it was: fallback on the chunk's compression ratio, then drop above it."""
    model = transcriber.model  # type: ignore[attr-defined]

    def run(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=5,
            word_timestamps=True,
            vad_filter=True,
            vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
            condition_on_previous_text=False,
            no_speech_threshold=0.6,
            log_prob_threshold=-1.0,
            compression_ratio_threshold=2.4,
        )
        kept = []
        for s in segments:
            if s.no_speech_prob > 0.6 and s.avg_logprob < -1.0:
                continue
            if s.compression_ratio > 2.4:
                continue
            if s.words and max(w.probability for w in s.words) < 0.15:
                continue
            kept.append(s.text.strip())
        return " ".join(kept)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--librivox", type=Path)
    args = parser.parse_args()
    from flowbot.wer import wer
    from processor.asr import WhisperTranscriber

    transcriber = WhisperTranscriber("bundled:tiny.en", device="cpu", cpu_threads=2)
    sides: dict[str, Callable[[np.ndarray], str]] = {
        "before": legacy(transcriber),
        "now": lambda a: " ".join(s.text for s in transcriber.transcribe(a)),
    }
    for name, (audio, reference) in corpora(args.librivox).items():
        parts = windows(audio)
        for run in range(args.runs):
            scores = {side: wer(reference, " ".join(fn(w) for w in parts)) for side, fn in sides.items()}
            print(
                f"{name:<11} run {run + 1}: WER before {scores['before']:.1%}  now {scores['now']:.1%}  "
                f"({audio.size / 16000:.0f} s, {len(parts)} windows)",
                flush=True,
            )


if __name__ == "__main__":
    main()

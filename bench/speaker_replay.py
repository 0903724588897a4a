"""Replay the speaker stages of ``bench.quality`` in seconds, and say why each misattributed word is wrong.

The first run with a ``--capture`` file runs ``bench.quality``'s pipeline once (per
CTranslate2 ISA: ``CT2_FORCE_CPU_ISA``) and keeps every ASR result and every raw window
diarization (segmentation-3.0 + clustering, before the turn check) keyed by its audio;
later runs with the same file take those from it, so only the turn check, the
registry, the store and the end-of-meeting reconciliation run again, and the figures
are exactly ``bench.quality``'s (same code path, same inputs)::

    CT2_FORCE_CPU_ISA=AVX2 .venv/bin/python -m bench.speaker_replay --capture /tmp/avx2.pkl [--why] [--shift 0.3,0.5]

``--shift`` replays each recording again with that many seconds of silence in front, as
``bench.quality --shift`` runs it (the window cuts fall elsewhere in the same speech).
``--why`` lists, per recording, the final transcript's misattributed words by cause
(:func:`word_causes`). Whole-file pyannote figures are printed as ``bench.quality`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import _row, flite_meeting, speaker_figures
from contracts.frames import SAMPLE_RATE
from contracts.segments import Word
from contracts.settings import Settings
from testkit.corpus import Recording, build, shifted
from testkit.evaluate import Run, cache_dir, run_live_and_final, whole_file_asr, whole_file_diarization, whole_file_run


def audio_key(audio: np.ndarray, *extra: object) -> str:
    """A key for one call on ``audio`` (its samples and the other arguments)."""
    digest = hashlib.sha1(np.ascontiguousarray(audio).tobytes())
    digest.update(repr(extra).encode())
    return digest.hexdigest()


class Recorded:
    """Calls of ``inner`` (a transcriber or diarizer) answered from ``memo`` where it holds them."""

    def __init__(self, inner: Any, memo: dict[str, Any]) -> None:
        self.inner = inner
        self.memo = memo
        self.misses = 0

    def _call(self, name: str, audio: np.ndarray, **kwargs: Any) -> Any:
        key = audio_key(audio, name, kwargs.get("beam_size"), kwargs.get("initial_prompt"), kwargs.get("speech"))
        if key not in self.memo:
            self.misses += 1
            self.memo[key] = getattr(self.inner, name)(audio, **kwargs)
        return self.memo[key]

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> Any:
        """The inner transcriber's result for this audio and these options."""
        return self._call("transcribe", audio, **kwargs)

    def transcribe_batch(self, audios: Sequence[np.ndarray], **kwargs: Any) -> list[Any]:
        """One :meth:`transcribe` per audio."""
        speech = kwargs.pop("speech", None) or [None] * len(audios)
        return [self.transcribe(a, speech=s, **kwargs) for a, s in zip(audios, speech, strict=True)]

    def diarize(self, audio: np.ndarray, speech: Any = None) -> Any:
        """The inner diarizer's result for this audio (speech maps differ only with the audio)."""
        key = audio_key(audio, "diarize", speech is None)
        if key not in self.memo:
            self.misses += 1
            self.memo[key] = self.inner.diarize(audio, speech)
        return self.memo[key]


class CountedEmbedder:
    """A turn embedder that counts its calls, the audio it embeds and the process CPU it takes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.seconds = 0.0
        self.cpu = 0.0

    def __call__(self, audio: np.ndarray) -> Any:
        started = time.process_time()
        try:
            return self.inner(audio)
        finally:
            self.cpu += time.process_time() - started
            self.calls += 1
            self.seconds += len(audio) / SAMPLE_RATE


def recorded_parts(settings: Settings, memo: dict[str, Any], check: dict[str, float] | None = None) -> Any:
    """``build_engine_parts(settings)`` with ASR and the raw window diarization answered from ``memo``,
    and the window turn check's knobs (:class:`processor.turn_check.TurnCheck`) set from ``check``."""
    from dataclasses import replace

    from processor.build import BackgroundDiarizer, build_engine_parts
    from processor.turn_check import TurnCheckingDiarizer

    parts = build_engine_parts(settings)
    checked = parts.diarizer.loaded() if isinstance(parts.diarizer, BackgroundDiarizer) else parts.diarizer
    diarizer: Any = Recorded(checked, memo)
    if isinstance(checked, TurnCheckingDiarizer):
        checked.inner = Recorded(checked.inner, memo)
        checked.check = replace(checked.check, **(check or {}))
        checked.embed = CountedEmbedder(checked.embed)
        diarizer = checked
    return replace(parts, transcriber=Recorded(parts.transcriber, memo), diarizer=diarizer)


def true_speaker(rec: Recording, t: float) -> str:
    """The reference speaker talking at ``t`` (the nearest utterance's in a gap)."""
    return min(
        rec.utterances, key=lambda u: 0.0 if u.start <= t < u.end else min(abs(t - u.start), abs(t - u.end))
    ).speaker


def word_causes(rec: Recording, run: Run) -> Counter[str]:
    """Misattributed words of ``run`` by cause.

    Each label stands for the true speaker it holds most words of; a word whose true
    speaker (the utterance at its middle) is not its label's is misattributed, and put
    under: ``no label`` (its true speaker leads no label), ``short turn`` (its stored turn
    is under 0.75 s: never checked), ``mixed turn`` (its turn spans 0.3 s or more of another
    true speaker), ``whole turn`` (a turn of one true voice under the wrong label).
    """
    truth = [true_speaker(rec, (w.start + w.end) / 2) for w in run.words]
    held: dict[str, Counter[str]] = {}
    for w, who in zip(run.words, truth, strict=True):
        held.setdefault(w.speaker or "?", Counter())[who] += 1
    lead = {lab: c.most_common(1)[0][0] for lab, c in held.items()}
    causes: Counter[str] = Counter()
    for w, who in zip(run.words, truth, strict=True):
        if lead[w.speaker or "?"] != who:
            causes[_cause(rec, run, w, who, set(lead.values()))] += 1
    return causes


def _cause(rec: Recording, run: Run, w: Word, who: str, leaders: set[str]) -> str:
    if who not in leaders:
        return "no label"
    mid = (w.start + w.end) / 2
    turn = next(((a, b) for a, b, lab in run.turns if a <= mid < b and lab == w.speaker), None)
    if turn is None:
        return "no turn"
    if turn[1] - turn[0] < 0.75:
        return "short turn"
    others = sum(max(0.0, min(u.end, turn[1]) - max(u.start, turn[0])) for u in rec.utterances if u.speaker != who)
    return "mixed turn" if others >= 0.3 else "whole turn"


def main(argv: list[str] | None = None) -> int:
    """Capture or replay, print ``bench.quality``'s speaker table (and the causes with ``--why``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, required=True, help="the ISA's recorded ASR and diarization")
    parser.add_argument("--recordings", default="sample,concat,squeezed,returning,flite")
    parser.add_argument("--why", action="store_true", help="misattributed final words by cause")
    parser.add_argument("--check", action="append", default=[], help="a TurnCheck knob, e.g. change_distance=0.5")
    parser.add_argument(
        "--shift", default="", help="also replay with these seconds of silence in front, e.g. 0.3,0.5,0.7"
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    memo: dict[str, Any] = pickle.loads(args.capture.read_bytes()) if args.capture.exists() else {}
    cache = cache_dir(None)
    recordings = build(cache)
    recordings["flite"] = flite_meeting(cache / "flite")
    rows = []
    with tempfile.TemporaryDirectory(prefix="flowbot-replay-") as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp), diarization="offline", interim_seconds=0.0)
        knobs = {k: float(v) for k, v in (c.split("=", 1) for c in args.check)}
        parts = recorded_parts(settings, memo, knobs)
        shifts = [float(x) for x in args.shift.split(",") if x.strip()]
        for name in [n.strip() for n in args.recordings.split(",") if n.strip()]:
            rec = recordings[name]
            live, final = run_live_and_final(rec, settings, parts)
            whole = whole_file_run(whole_file_asr(rec, parts.transcriber), whole_file_diarization(rec, parts.diarizer))
            label = f"{name} ({rec.duration:.0f} s)"
            for system, run in (("live", live), ("final", final), ("whole file", whole)):
                rows.append(_row(label, system, speaker_figures(rec, run)))
            if args.why:
                print(f"{name}: {dict(word_causes(rec, final))}", file=sys.stderr)
            # The same speech with the window cuts elsewhere (bench.quality --shift).
            for seconds in shifts:
                moved = shifted(rec, seconds, Path(tmp) / "shifted")
                live, final = run_live_and_final(moved, settings, parts)
                for system, run in (("live", live), ("final", final)):
                    rows.append(_row(f"{name} +{seconds:g} s", system, speaker_figures(moved, run)))
                if args.why:
                    print(f"{name} +{seconds:g} s: {dict(word_causes(moved, final))}", file=sys.stderr)
    embed = getattr(parts.diarizer, "embed", None)
    if isinstance(embed, CountedEmbedder):
        print(
            f"turn check: {embed.calls} embeddings, {embed.seconds:.0f} s of audio, {embed.cpu:.1f} CPU s",
            file=sys.stderr,
        )
    misses = parts.transcriber.misses + getattr(parts.diarizer, "inner", parts.diarizer).misses
    if misses:
        args.capture.write_bytes(pickle.dumps(memo))
    print(f"({misses} calls not in {args.capture})", file=sys.stderr)
    print("| recording | system | WER % | cpWER % | cpWER - WER | found / true | count error | DER % |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Diarization cost next to ASR's, and DER, for the previous and the current offline path, in one run.

On the real-speech set (:mod:`bench.real_speech`: pyannote's ``sample.wav`` and
conversations assembled from pocketsphinx's recordings), optionally plus flite
conversations, each recording is cut into windows at silences (<= 30 s, as the
processor does) and every window goes through, in one process and in rotating
order (so a load change on this shared machine hits every component alike):

- ASR: ``WhisperTranscriber("bundled:tiny.en")`` (int8, beam 5, VAD filter);
- diarization ``previous``: :data:`processor.pyannote_diarizer.PER_CHUNK_FULL_MASK`,
  the offline default before the capped embedding step;
- diarization ``default``: today's :class:`OfflineParams` (capped embeddings,
  CAM++ on onnxruntime).

Windows are mapped to session speakers by the registry as in the processor, and
DER (pyannote.metrics, collar 0, overlap scored) is computed on the stitched
turns. It prints process CPU seconds and wall seconds per component, their ratio
to ASR's, and DER per recording and over the set. Compare ratios within a run.

    .venv/bin/python bench/diarization.py [--flite 2,3,4] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass
class Component:
    """One thing timed on every window: process CPU and wall seconds, and its diarization turns."""

    name: str
    run: Callable[[np.ndarray, tuple[int, int]], list[Any]]
    cpu: float = 0.0
    wall: float = 0.0
    turns: list[Any] = field(default_factory=list)
    der: dict[str, float] = field(default_factory=dict)
    speakers: dict[str, int] = field(default_factory=dict)
    metric: Any = None

    def step(self, audio: np.ndarray, bounds: tuple[int, int]) -> None:
        """Process one window, adding its cost."""
        cpu, wall = time.process_time(), time.perf_counter()
        self.turns += self.run(audio, bounds)
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall


def _recordings(args: argparse.Namespace) -> list[tuple[str, list[tuple[str, np.ndarray, tuple[Any, ...]]]]]:
    from bench.real_speech import real_speech_set

    cache = ROOT / ".cache" / "bench-diarization"
    sets = [("real speech", [(r.name, r.audio, r.turns) for r in real_speech_set(cache)])]
    if args.flite:
        from tests.diarization.conversations import make_conversation

        flite = []
        for n in (int(v) for v in args.flite.split(",")):
            rec = make_conversation(n, args.flite_minutes, cache, seed={2: 1, 3: 2, 4: 3}.get(n, n), late_joiner=n == 4)
            flite.append((rec.path.stem, rec.audio, rec.turns))
        sets.append(("flite", flite))
    return sets


def main() -> int:
    """Build the recordings, run every window through every component, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flite", default="", help="also flite conversations with these numbers of voices, e.g. 2,3,4")
    parser.add_argument("--flite-minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from pyannote.metrics.diarization import DiarizationErrorRate

    from contracts.settings import Settings
    from processor.asr import WhisperTranscriber
    from processor.diarization import Diarizer, SpeakerMapper
    from processor.pyannote_diarizer import PER_CHUNK_FULL_MASK, OfflineParams, build_diarizer
    from processor.speakers import build_mapper, diarize_in_windows
    from tests.diarization.conversations import silence_cuts, turns_to_annotation

    torch.set_num_threads(args.threads)
    settings = Settings.from_env({}, diarization="offline", diarization_device="cpu", cpu_threads=args.threads)
    asr = WhisperTranscriber("bundled:tiny.en", device="cpu", cpu_threads=args.threads)
    default = OfflineParams()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diarizers: dict[str, Diarizer] = {
            f"diarization previous (step {PER_CHUNK_FULL_MASK.segmentation_step:g}, full masks)": build_diarizer(
                settings, PER_CHUNK_FULL_MASK
            ),
            f"diarization default (step {default.segmentation_step:g}, capped, onnxruntime)": build_diarizer(
                settings, default
            ),
        }
    sets = _recordings(args)
    warm = sets[0][1][0][1][: 5 * 16_000]  # first calls build kernels; keep them out of the figures
    asr.transcribe(warm)
    for d in diarizers.values():
        d.diarize(warm)

    def transcribe(audio: np.ndarray, bounds: tuple[int, int]) -> list[Any]:
        asr.transcribe(np.ascontiguousarray(audio[bounds[0] : bounds[1]]))
        return []

    def diarizing(diarizer: Diarizer, mappers: dict[int, SpeakerMapper]) -> Callable[..., list[Any]]:
        # One session speaker registry per recording, as the processor keeps one per session.
        def run(audio: np.ndarray, bounds: tuple[int, int]) -> list[Any]:
            mapper = mappers.setdefault(id(audio), build_mapper(Settings.from_env({}), None))
            return diarize_in_windows(diarizer, mapper, audio, [bounds])

        return run

    print(
        f"{args.threads} threads on {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}; "
        "components interleaved window by window"
    )
    for set_name, recordings in sets:
        components = [Component("ASR tiny.en int8 (beam 5, VAD filter)", transcribe)]
        components += [Component(name, diarizing(d, {})) for name, d in diarizers.items()]
        for c in components[1:]:
            c.metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
        windows = 0
        for rec_name, audio, reference in recordings:
            bounds = silence_cuts(audio, max_s=30.0, min_s=15.0)
            windows += len(bounds)
            for c in components:
                c.turns = []
            for i, window in enumerate(bounds):
                for j in range(len(components)):  # rotate the order window by window
                    components[(i + j) % len(components)].step(audio, window)
            ref = turns_to_annotation(list(reference))
            for c in components[1:]:
                hyp = turns_to_annotation([(t.start, t.end, t.speaker) for t in c.turns])
                c.der[rec_name] = float(c.metric(ref, hyp))
                c.speakers[rec_name] = len({t.speaker for t in c.turns})
        seconds = sum(len(a) for _, a, _ in recordings) / 16_000
        _print(set_name, [r[0] for r in recordings], components, seconds, windows)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


def _print(set_name: str, names: list[str], rows: list[Component], seconds: float, windows: int) -> None:
    asr = rows[0]
    print(f"\n{set_name}: {len(names)} recordings, {seconds:.0f} s of audio, {windows} windows")
    print(
        f"{'component':<58} {'CPU s':>7} {'CPU s/min':>9} {'x ASR':>6} {'wall s':>7} {'x ASR':>6} {'DER':>7}  "
        + "  ".join(f"{f'#{i + 1}':>8}" for i in range(len(names)))
    )
    for row in rows:
        per_rec = "  ".join(f"{row.der[n]:>6.1%} {row.speakers[n]}" if n in row.der else f"{'-':>8}" for n in names)
        total = f"{abs(row.metric):.1%}" if row.metric is not None else "-"
        print(
            f"{row.name:<58} {row.cpu:>7.1f} {row.cpu / seconds * 60:>9.2f} {row.cpu / asr.cpu:>6.2f} "
            f"{row.wall:>7.1f} {row.wall / asr.wall:>6.2f} {total:>7}  {per_rec}"
        )
    previous, default = rows[1], rows[2]
    print(
        f"default / previous: CPU x{default.cpu / previous.cpu:.2f}, wall x{default.wall / previous.wall:.2f}; "
        f"DER {abs(default.metric):.1%} vs {abs(previous.metric):.1%}"
    )
    print("recordings: " + ", ".join(f"#{i + 1} {n}" for i, n in enumerate(names)) + " (DER, speakers found)")


if __name__ == "__main__":
    raise SystemExit(main())

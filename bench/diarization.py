"""Diarization cost next to ASR's, and DER, for the previous and the current offline path, in one run.

Each recording of the real-speech development set (testkit/corpus.py:
``sample``, pyannote's two-speaker telephone call; ``concat``, six speakers with
short gaps; ``squeezed``, pauses squeezed under 150 ms) and the flite planning
meeting goes through ``flowbot transcribe``'s own path (producer, stream, ~30 s
windows, session speaker registry, store) once per diarizer, the order rotating
from one recording to the next:

- ``previous``: :func:`full_mask_diarizer`, the
  offline default before the capped embedding step (2 s hop, every chunk's
  whole mask through the PyTorch CAM++: pyannote's own embedding step, kept
  here only, as the reference);
- ``default``: today's :class:`OfflineParams` (5 s hop, capped embeddings,
  CAM++ on onnxruntime), given the window's VAD (silent chunks skipped);
- ``no-vad`` (with ``--systems``): the default not given the window's VAD.

ASR (bundled tiny.en, int8, beam 5: the offline default) runs in both passes on
the same windows. Every ``diarize`` and ``transcribe`` call is timed in process
CPU seconds (diarization runs inline here, so the engine calls them one after
the other and nothing else runs meanwhile) and wall seconds. DER is scored as bench/quality.py scores the
pipeline: the stored window turns (overlap kept) against the reference, no
collar, overlapping speech counted.

    .venv/bin/python -m bench.diarization [--recordings sample,concat,squeezed,flite] [--threads 2]
        [--systems previous,default,no-vad]

Compare the ratios within a run: this machine is shared and its load changes.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contracts.settings import Settings
from processor.asr import AsrResult, Transcriber
from processor.diarization import Diarization, Diarizer
from processor.vad import Spans, SpeechMap

if TYPE_CHECKING:
    import processor.pyannote_diarizer


@dataclass
class Meter:
    """Process CPU and wall seconds spent in one component."""

    cpu: float = 0.0
    wall: float = 0.0

    def add(self, cpu0: float, wall0: float) -> None:
        """Add the time since ``(time.process_time(), time.perf_counter())`` were ``cpu0, wall0``."""
        self.cpu += time.process_time() - cpu0
        self.wall += time.perf_counter() - wall0


def per_chunk_full_mask() -> processor.pyannote_diarizer.OfflineParams:
    """The knobs of the offline default before the capped embedding step (2 s hop, no constrained
    assignment, speakers active >= 20 % of a chunk embedded); pyannote is imported lazily."""
    from processor.pyannote_diarizer import OfflineParams

    return OfflineParams(
        segmentation_step=0.2, segmentation_batch_size=1, min_active_ratio=0.2, constrained_assignment=False
    )


def full_mask_diarizer(settings: Settings) -> Diarizer:
    """The offline default before the capped embedding step: pyannote's own embedding step, every
    (chunk, speaker) embedded on its whole mask by the PyTorch CAM++ (each second of speech ~5 times
    at the 2 s hop). The reference the default is compared against; production never runs it."""
    from pyannote.audio.pipelines import SpeakerDiarization

    from artefacts import DIARIZATION_OFFLINE, locate
    from processor.pyannote_diarizer import PyannoteDiarizer, instantiate, offline_components

    params = per_chunk_full_mask()
    components = offline_components(locate(DIARIZATION_OFFLINE, settings), params)
    components["embedding"].min_speech_ratio = params.min_active_ratio
    components["embedding"].warm_up()  # this reference runs the PyTorch network on CPU
    pipeline = instantiate(SpeakerDiarization(embedding_batch_size=1, **components), params)
    return PyannoteDiarizer(pipeline, device="cpu", name="full-mask")


class TimedTranscriber(Transcriber):
    """A transcriber whose calls are added to a meter."""

    def __init__(self, inner: Transcriber, meter: Meter) -> None:
        self.inner, self.meter = inner, meter

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """The inner transcriber's result, timed."""
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return self.inner.transcribe(audio, beam_size=beam_size, initial_prompt=initial_prompt, speech=speech)
        finally:
            self.meter.add(cpu, wall)


class TimedDiarizer:
    """A diarizer whose calls are added to a meter; without ``vad`` it is not given the window's VAD."""

    def __init__(self, inner: Diarizer, meter: Meter, *, vad: bool = True) -> None:
        self.inner, self.meter, self.vad = inner, meter, vad

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """The inner diarizer's result, timed."""
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return self.inner.diarize(audio, speech if self.vad else None)
        finally:
            self.meter.add(cpu, wall)


@dataclass
class Row:
    """One diarizer on one recording: its cost, the ASR cost of the same pass, its DER."""

    recording: str
    seconds: float
    system: str
    diarization: Meter
    asr: Meter
    der: dict[str, float]
    speakers: int


def _table(rows: Sequence[Row], systems: Sequence[str]) -> None:
    header = (
        "recording",
        "diarizer",
        "diar CPU s",
        "ASR CPU s",
        "diar/ASR CPU",
        "diar/ASR wall",
        "DER %",
        "miss / FA / conf %",
        "speakers",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        parts = f"{100 * r.der['missed']:.1f} / {100 * r.der['false_alarm']:.1f} / {100 * r.der['confusion']:.1f}"
        print(
            f"| {r.recording} ({r.seconds:.0f} s) | {r.system} | {r.diarization.cpu:.1f} | {r.asr.cpu:.1f} | "
            f"{r.diarization.cpu / r.asr.cpu:.2f} | {r.diarization.wall / r.asr.wall:.2f} | "
            f"{100 * r.der['der']:.1f} | {parts} | {r.speakers} |"
        )
    print()
    for system in systems:
        mine = [r for r in rows if r.system == system]
        diar = sum(r.diarization.cpu for r in mine)
        asr = sum(r.asr.cpu for r in mine)
        audio = sum(r.seconds for r in mine)
        print(
            f"{system}: diarization {diar:.1f} CPU s = {diar / asr:.2f} x ASR ({asr:.1f} CPU s) on "
            f"{audio:.0f} s of audio; diarization {60 * diar / audio:.1f} CPU s per audio minute"
        )
    if len(systems) == 2:
        a, b = systems
        ratio = sum(r.diarization.cpu for r in rows if r.system == b) / sum(
            r.diarization.cpu for r in rows if r.system == a
        )
        print(f"{b} / {a} diarization CPU: x{ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    """Run every recording through the pipeline once per diarizer and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", default="sample,concat,squeezed,flite")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for ASR and diarization")
    parser.add_argument("--cache", type=Path, default=None, help="where the development set is built")
    parser.add_argument("--systems", default="previous,default", help="of previous, default, no-vad")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import torch

    from bench.quality import flite_meeting
    from processor.build import build_engine_parts, check_loaded
    from processor.pyannote_diarizer import OfflineParams, build_diarizer
    from testkit.corpus import build
    from testkit.evaluate import cache_dir, der, run_pipeline

    torch.set_num_threads(args.threads)
    cache = cache_dir(args.cache)
    recordings = build(cache)
    recordings["flite"] = flite_meeting(cache / "flite")
    names = [n.strip() for n in args.recordings.split(",") if n.strip()]
    default = OfflineParams()
    print(
        f"{args.threads} threads on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"previous = step {per_chunk_full_mask().segmentation_step:g}, full masks, PyTorch CAM++; "
        f"default = step {default.segmentation_step:g}, capped at one hop, CAM++ on onnxruntime",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="flowbot-bench-diarization-") as tmp:
        settings = Settings.from_env(
            {},
            data_dir=Path(tmp),
            diarization="offline",
            diarization_device="cpu",
            interim_seconds=0.0,
            cpu_threads=args.threads,
        )
        parts = build_engine_parts(settings)
        check_loaded(parts, wait=True)  # its background load must not run during the measurements
        # Inline diarization: process CPU time of a call is that call's alone.
        parts = replace(parts, diarization_pool=None)
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        build_default = functools.partial(build_diarizer, settings, default)
        builders = {"previous": functools.partial(full_mask_diarizer, settings), "default": build_default}
        diarizers: dict[str, Diarizer] = {s: builders.get(s, build_default)() for s in systems}
        # First calls build kernels and caches; keep them out of the figures.
        warm = recordings["sample"].audio()[: 10 * 16_000]
        parts.transcriber.transcribe(warm)
        for d in diarizers.values():
            d.diarize(warm)
        rows: list[Row] = []
        for i, name in enumerate(names):
            rec = recordings[name]
            turn = i % len(systems)
            for system in systems[turn:] + systems[:turn]:
                diar, asr = Meter(), Meter()
                timed = replace(
                    parts,
                    transcriber=TimedTranscriber(parts.transcriber, asr),
                    diarizer=TimedDiarizer(diarizers[system], diar, vad=system != "no-vad"),
                )
                run = run_pipeline(rec, settings, timed)
                rows.append(
                    Row(name, rec.duration, system, diar, asr, der(rec.reference_turns(), run.turns), len(run.speakers))
                )
                print(f"{name} {system}: done", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (names.index(r.recording), systems.index(r.system)))
    _table(rows, systems)
    print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

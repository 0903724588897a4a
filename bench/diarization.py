"""Diarization cost next to ASR's, on the same audio, in one run.

Generates a multi-speaker flite conversation, cuts it into ~30 s windows at
silences (as the processor does), then runs, each in its own subprocess so
peak memory is measured per component:

- the offline diarization default (segmentation-3.0 + CAM++) at several
  segmentation steps, window by window with the session speaker registry,
  reporting DER against the known turns;
- ASR with ``WhisperTranscriber("bundled:tiny.en")`` on the same windows.

It prints seconds of compute per audio minute, the real-time factor, peak RSS,
and the combined real-time factor of the offline default (diarization + ASR)
for one live meeting on this machine's cores. Numbers from a shared, busy
machine are noisy: compare the rows of one run, not runs with each other.

    .venv/bin/python bench/diarization.py [--minutes 3] [--speakers 3] [--steps 0.1,0.2,0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(audio_path: Path) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[float, float, str]]]:
    data = json.loads(audio_path.with_suffix(".json").read_text())
    audio = np.load(audio_path)
    return audio, [tuple(b) for b in data["bounds"]], [tuple(t) for t in data["turns"]]


def worker_diarization(audio_path: Path, step: float, threads: int) -> dict[str, float]:
    """Offline pipeline at ``step``, window by window, with the registry."""
    import torch
    from pyannote.metrics.diarization import DiarizationErrorRate

    from contracts.settings import Settings
    from processor.offline_weights import locate
    from processor.pyannote_diarizer import OfflineParams, PyannoteDiarizer, build_offline_pipeline
    from processor.speakers import build_mapper, diarize_in_windows
    from tests.diarization.conversations import turns_to_annotation

    torch.set_num_threads(threads)
    audio, bounds, turns = _load(audio_path)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = build_offline_pipeline(locate(), OfflineParams(segmentation_step=step))
    diarizer = PyannoteDiarizer(pipeline, device="cpu", name="offline")
    load = time.perf_counter() - t0
    mapper = build_mapper(Settings.from_env({}), None)
    t0 = time.perf_counter()
    out = diarize_in_windows(diarizer, mapper, audio, bounds)
    elapsed = time.perf_counter() - t0
    hyp = turns_to_annotation([(t.start, t.end, t.speaker) for t in out])
    der = DiarizationErrorRate(collar=0.0)(turns_to_annotation(turns), hyp)
    return {
        "load_s": load,
        "compute_s": elapsed,
        "der": float(der),
        "speakers": len({t.speaker for t in out}),
        "peak_rss_mib": _peak_rss_mib(),
    }


def worker_asr(audio_path: Path, threads: int) -> dict[str, float]:
    """faster-whisper tiny.en on the same windows."""
    from processor.asr import WhisperTranscriber

    audio, bounds, _ = _load(audio_path)
    t0 = time.perf_counter()
    asr = WhisperTranscriber("bundled:tiny.en", device="cpu", cpu_threads=threads)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    words = 0
    for start, end in bounds:
        words += sum(len(s.words) for s in asr.transcribe(audio[start:end]))
    return {
        "load_s": load,
        "compute_s": time.perf_counter() - t0,
        "words": words,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _run_worker(args: list[str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Generate audio, run the workers one after another, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--steps", default="0.1,0.2,0.5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, path = args.worker[0], Path(args.worker[1])
        if kind == "diar":
            res = worker_diarization(path, float(args.worker[2]), args.threads)
        else:
            res = worker_asr(path, args.threads)
        sys.stdout.write(json.dumps(res) + "\n")
        return 0

    from tests.diarization.conversations import make_conversation, silence_cuts

    cache = ROOT / ".cache" / "bench-diarization"
    rec = make_conversation(args.speakers, args.minutes, cache, seed=args.speakers)
    bounds = silence_cuts(rec.audio)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio.npy"
        np.save(path, rec.audio)
        path.with_suffix(".json").write_text(json.dumps({"bounds": bounds, "turns": list(rec.turns)}))
        minutes = rec.duration / 60
        print(
            f"audio: {rec.duration:.0f} s, {args.speakers} flite voices, {len(bounds)} windows "
            f"(cut at silences, <= 30 s); {args.threads} threads on {os.cpu_count()} cores; "
            f"load average before: {os.getloadavg()[0]:.1f}"
        )
        asr = _run_worker(["asr", str(path), "--threads", str(args.threads)])
        rows: list[tuple[str, dict[str, float], float | None]] = [("ASR tiny.en (int8)", asr, None)]
        for value in [float(s) for s in args.steps.split(",")]:
            res = _run_worker(["diar", str(path), str(value), "--threads", str(args.threads)])
            rows.append((f"diarization offline step={value:g}", res, value))
    print(
        f"{'component':<34} {'s/audio-min':>11} {'RTF':>6} {'x ASR':>6} {'load s':>7} "
        f"{'peak MiB':>9} {'DER':>7} {'spk':>4}"
    )
    for name, res, step in rows:
        per_min = res["compute_s"] / minutes
        der = f"{res['der']:.2%}" if step is not None else "-"
        spk = str(res["speakers"]) if step is not None else "-"
        print(
            f"{name:<34} {per_min:>11.2f} {per_min / 60:>6.3f} "
            f"{res['compute_s'] / asr['compute_s']:>6.2f} {res['load_s']:>7.1f} "
            f"{res['peak_rss_mib']:>9.0f} {der:>7} {spk:>4}"
        )
    default = next((r for n, r, s in rows if s == 0.2), rows[-1][1])
    combined = (default["compute_s"] + asr["compute_s"]) / rec.duration
    print(
        f"combined real-time factor of the offline default (step 0.2 diarization + tiny.en ASR): "
        f"{combined:.3f} ({'faster' if combined < 1 else 'SLOWER'} than real time)"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pipeline overhead and real-time factor, measured side by side in one run.

    .venv/bin/python -m bench.pipeline [--file F] [--repeat 2] [--minutes 5]

A: ``flowbot transcribe`` (producer -> embedded stream -> processor -> store ->
notes), diarization off so both sides do the same ASR work;
B: bare faster-whisper on the same file, same model and decoding options.
Both include model loading. Runs alternate (A, B, A, B ...) and the best of
each is compared, because this machine is shared and noisy. Target: A/B <= 1.15.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_pipeline(path: Path, model: str) -> float:
    from contracts.settings import Settings
    from flowbot.pipeline import transcribe_file
    from processor import build

    build._transcriber.cache_clear()  # load the model inside the timed run, as the CLI does
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp), diarization="none", asr_model=model)
        t0 = time.perf_counter()
        result = transcribe_file(path, settings)
        wall = time.perf_counter() - t0
    assert result.state == "completed", result.reason
    return wall


def run_bare(path: Path, model: str) -> float:
    from faster_whisper import WhisperModel

    from processor.asr import AsrOptions
    from processor.asr_models import resolve_model
    from producer.decode import read_pcm

    t0 = time.perf_counter()
    audio = read_pcm(str(path)).astype("float32") / 32768.0
    opts = AsrOptions()
    whisper = WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = whisper.transcribe(
        audio,
        language="en",
        beam_size=opts.beam_size,
        word_timestamps=True,
        vad_filter=True,
        vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
        condition_on_previous_text=opts.condition_on_previous_text,
    )
    list(segments)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path)
    parser.add_argument("--minutes", type=int, default=5, help="length of the generated meeting")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="bundled:tiny.en")
    args = parser.parse_args()
    if args.file is None:
        from tests.speech import meeting_wav

        work = Path(tempfile.mkdtemp(prefix="flowbot-bench-"))
        args.file, _ = meeting_wav(work, repeat=max(1, round(args.minutes * 60 / 100)))
    from producer.decode import read_pcm

    seconds = len(read_pcm(str(args.file))) / 16000
    a, b = [], []
    for _ in range(args.repeat):
        a.append(run_pipeline(args.file, args.model))
        b.append(run_bare(args.file, args.model))
    best_a, best_b = min(a), min(b)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"audio: {seconds:.1f} s, model {args.model}, {os.cpu_count()} cores, runs {args.repeat}")
    for name, runs in (("flowbot transcribe", a), ("bare faster-whisper", b)):
        every = ", ".join(f"{x:.2f}" for x in runs)
        print(f"{name}: best {min(runs):.2f} s  (all {every})  RTF {min(runs) / seconds:.3f}")
    print(f"overhead ratio flowbot/bare: {best_a / best_b:.3f}  (target <= 1.15)")
    print(f"peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()

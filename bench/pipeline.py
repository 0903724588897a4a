"""Pipeline overhead and real-time factor, measured side by side in one run.

    .venv/bin/python -m bench.pipeline [--recordings sample,concat,squeezed,flite] [--repeat 2]
    .venv/bin/python -m bench.pipeline --file F | --minutes 5

For each recording (the real-speech development set of testkit/corpus.py
and the flite meeting by default; or one file; or a generated flite meeting of
``--minutes``), three systems, diarization off so all do the same ASR work:

- ``sequential``: ``flowbot transcribe`` (producer -> embedded stream ->
  processor -> store -> notes) with its windows decoded one at a time, as
  live meetings are (``FLOWBOT_TRANSCRIBE_BATCH_WINDOWS=1``);
- ``batched``: the same with the file's windows decoded in batches through
  faster-whisper's BatchedInferencePipeline (``--batch-windows``, 8);
- ``bare``: faster-whisper's own ``transcribe`` on the whole file, same model
  and decoding options.

All include model loading and reading the file. Runs alternate (the three
systems in turn, ``--repeat`` times) and the best of each is compared, because
this machine is shared and noisy. WER is printed where the recording has a
reference (decoding is deterministic: a busy machine changes times, not words).
Targets: sequential/bare <= 1.05; batched/bare < 1.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

SYSTEMS = ("sequential", "batched", "bare")


@dataclass
class Case:
    """One file to transcribe, with its reference text when known."""

    name: str
    path: Path
    seconds: float
    reference: str | None


def run_pipeline(path: Path, model: str, batch_windows: int) -> tuple[float, str]:
    """``flowbot transcribe`` on ``path``: (wall seconds, text)."""
    from contracts.settings import Settings
    from flowbot.pipeline import transcribe_file
    from processor import build

    # Load the model inside the timed run, as the CLI does.
    build._transcriber.cache_clear()
    build._batching.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            {}, data_dir=Path(tmp), diarization="none", asr_model=model, transcribe_batch_windows=batch_windows
        )
        t0 = time.perf_counter()
        result = transcribe_file(path, settings)
        wall = time.perf_counter() - t0
    assert result.state == "completed", result.reason
    return wall, " ".join(s.text for s in result.segments)


def run_bare(path: Path, model: str) -> tuple[float, str]:
    """faster-whisper alone on ``path``: (wall seconds, text)."""
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
    text = " ".join(s.text for s in segments)
    return time.perf_counter() - t0, text


def cases(args: argparse.Namespace) -> list[Case]:
    """The recordings the command line asks for."""
    from producer.decode import read_pcm

    if args.file is not None:
        return [Case(args.file.name, args.file, len(read_pcm(str(args.file))) / 16000, None)]
    work = Path(tempfile.mkdtemp(prefix="flowbot-bench-"))
    if args.minutes:
        from testkit.speech import meeting_wav

        path, turns = meeting_wav(work, repeat=max(1, round(args.minutes * 60 / 100)))
        text = " ".join(t.text for t in sorted(turns, key=lambda t: t.start))
        return [Case(f"flite x{max(1, round(args.minutes * 60 / 100))}", path, len(read_pcm(str(path))) / 16000, text)]
    from bench.quality import flite_meeting
    from testkit.corpus import build
    from testkit.evaluate import cache_dir

    cache = cache_dir(args.cache)
    recordings = build(cache)
    recordings["flite"] = flite_meeting(cache / "flite")
    names = [n.strip() for n in args.recordings.split(",") if n.strip()]
    return [Case(n, recordings[n].path, recordings[n].duration, recordings[n].text) for n in names]


def main(argv: list[str] | None = None) -> int:
    """Run every system on every recording, alternating; print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", default="sample,concat,squeezed,flite")
    parser.add_argument("--cache", type=Path, default=None, help="where the real-speech set is built")
    parser.add_argument("--file", type=Path, help="one audio file instead of the recordings")
    parser.add_argument("--minutes", type=int, default=0, help="a generated flite meeting this long instead")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="bundled:tiny.en")
    parser.add_argument("--batch-windows", type=int, default=8, help="windows per batched call")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from flowbot.wer import normalize, wer

    todo = cases(args)
    runs: dict[tuple[str, str], list[float]] = {}
    texts: dict[tuple[str, str], str] = {}
    for _ in range(args.repeat):
        for case in todo:
            for system in SYSTEMS:
                if system == "bare":
                    wall, text = run_bare(case.path, args.model)
                else:
                    batch = 1 if system == "sequential" else args.batch_windows
                    wall, text = run_pipeline(case.path, args.model, batch)
                runs.setdefault((case.name, system), []).append(wall)
                texts[(case.name, system)] = text
                print(f"{case.name} {system}: {wall:.2f} s", file=sys.stderr, flush=True)
    print(f"model {args.model}, {os.cpu_count()} cores, best of {args.repeat}, diarization off, model load included")
    print()
    header = ("recording", *(f"{s} s" for s in SYSTEMS), "sequential/bare", "batched/bare", "batched/sequential")
    header += tuple(f"WER {s} %" for s in SYSTEMS)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    total = dict.fromkeys(SYSTEMS, 0.0)
    errors = dict.fromkeys(SYSTEMS, 0.0)  # pooled WER: word errors over all reference words
    words = 0
    for case in todo:
        best = {s: min(runs[(case.name, s)]) for s in SYSTEMS}
        for s in SYSTEMS:
            total[s] += best[s]
        if case.reference is not None:
            words += len(normalize(case.reference))
            for s in SYSTEMS:
                errors[s] += wer(case.reference, texts[(case.name, s)]) * len(normalize(case.reference))
        wers = [
            "-" if case.reference is None else f"{100 * wer(case.reference, texts[(case.name, s)]):.1f}"
            for s in SYSTEMS
        ]
        row = (
            f"{case.name} ({case.seconds:.0f} s)",
            *(f"{best[s]:.2f}" for s in SYSTEMS),
            f"{best['sequential'] / best['bare']:.3f}",
            f"{best['batched'] / best['bare']:.3f}",
            f"{best['batched'] / best['sequential']:.3f}",
            *wers,
        )
        print("| " + " | ".join(row) + " |")
    if len(todo) > 1:
        row = (
            f"all ({sum(c.seconds for c in todo):.0f} s)",
            *(f"{total[s]:.2f}" for s in SYSTEMS),
            f"{total['sequential'] / total['bare']:.3f}",
            f"{total['batched'] / total['bare']:.3f}",
            f"{total['batched'] / total['sequential']:.3f}",
            *(f"{100 * errors[s] / words:.1f}" if words else "-" for s in SYSTEMS),
        )
        print("| " + " | ".join(row) + " |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

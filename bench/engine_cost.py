"""The pipeline's cost over bare ASR, two source trees side by side (issue 22's targets).

    .venv/bin/python -m bench.engine_cost --base /tmp/base-tree [--recordings concat,flite1,flite6] [--repeat 2]

For each recording and each tree (``--base``, e.g. ``git archive 5fda8b9`` unpacked,
and this tree), ``flowbot transcribe``'s path is timed in a fresh process with
that tree first on the path, with diarization off and with the defaults
(offline diarization); bare faster-whisper on the whole file (same model and
decoding options) is timed once per round as the reference. Model loading and
reading the file are included everywhere, as the CLI pays them. Runs alternate
(every system in turn, ``--repeat`` times) and the best of each is kept: the
machine is shared and noisy. Each run reports wall seconds and the child
process's CPU seconds (user + system, ``getrusage(RUSAGE_CHILDREN)``): CPU
seconds move little when other work shares the cores, wall seconds show what
overlapping work saves. Each run also counts faster-whisper's encoder passes
(``WhisperModel.encode`` calls, the last figure in each cell): a window whose last
segment Whisper left unfinished takes a second one (docs/diarization.md). Every
child imports from bytecode cached by an untimed warm-up run, as an installed flowbot
does (``--no-bytecode``: compiled from source in every run, as a box that sets
``PYTHONDONTWRITEBYTECODE`` over a ``--no-compile`` venv does; see ``child_env``). Targets:
diarization off <= 1.05x bare; defaults <= 1.5x bare on a 2 min meeting, <= 1.3x on a
10 min one.

Recordings: ``concat`` (the real-speech set's 73 s six-speaker meeting),
``sample``/``squeezed``/``returning`` (the rest of that set), ``fliteN`` (the flite
planning meeting, about 100 s, repeated N times: ``flite6`` is about 10 min), ``realN``
(the real recordings ``returning``, ``concat`` and ``squeezed`` one after another, 1 s
apart, round after round until N minutes: the same six voices come back every ~3.5 min;
``real10`` is the 10 min real meeting).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from testkit.corpus import Recording

HERE = Path(__file__).resolve().parents[1]

#: Run inside the child process, with the tree under test first on sys.path.
CHILD = r"""
import json, sys, tempfile, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
path, system, model = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
from faster_whisper import WhisperModel as _Whisper
_encode, _encodes = _Whisper.encode, [0]
def _counted(self, features, *a, **kw):
    _encodes[0] += 1
    return _encode(self, features, *a, **kw)
_Whisper.encode = _counted
if system == "bare":
    from faster_whisper import WhisperModel
    from processor.asr import AsrOptions
    from processor.asr_models import resolve_model
    from producer.decode import read_pcm
    audio = read_pcm(path).astype("float32") / 32768.0
    opts = AsrOptions()
    whisper = WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = whisper.transcribe(audio, language="en", beam_size=opts.beam_size, word_timestamps=True,
        vad_filter=True, vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
        condition_on_previous_text=opts.condition_on_previous_text)
    text = " ".join(s.text for s in segments)
else:
    from contracts.settings import Settings
    from flowbot.pipeline import transcribe_file
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp), asr_model=model, transcribe_batch_windows=1,
            diarization="none" if system == "nodiar" else "offline")
        result = transcribe_file(path, settings)
        assert result.state == "completed", result.reason
        text = " ".join(s.text for s in result.segments)
print(json.dumps({"wall": time.perf_counter() - t0, "text": text, "encodes": _encodes[0]}))
"""


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env(tree: Path, bytecode: Path | None) -> dict[str, str]:
    """The environment of a timed child: ``tree`` first on the path, and Python's bytecode cached in ``bytecode``.

    An installed flowbot imports its packages from bytecode (pip compiles what it
    installs; Python writes what it imports on first use), but a box that sets
    ``PYTHONDONTWRITEBYTECODE=1`` over a venv installed with ``--no-compile``
    (scripts/setup) compiles every module from source in every process: importing
    torch and pyannote.audio took 15.7-17.8 CPU s that way against 4.9-5.8 from
    bytecode (round 27, docs/diarization.md), a cost bare faster-whisper, which
    imports neither, does not share. ``bytecode`` (a ``PYTHONPYCACHEPREFIX``
    folder, so the venv is not written) gives every system its bytecode; None
    measures the box as it is.
    """
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_WAIT_POLICY="PASSIVE", PYANNOTE_METRICS_ENABLED="false")
    if bytecode is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return env


def run(tree: Path, path: Path, system: str, model: str, bytecode: Path | None) -> tuple[float, float, str, int]:
    """One timed run in a fresh process with ``tree`` first on the path: (wall seconds, CPU seconds, text, encodes).

    ``encodes``: faster-whisper's encoder passes (``WhisperModel.encode`` calls).

    Wall is timed inside the child (from its first line, so interpreter start-up is out);
    CPU is the whole child's, start-up included. ``bytecode``: see :func:`child_env`.
    """
    env = child_env(tree, bytecode)
    cpu0 = children_cpu()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), system, model],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = children_cpu() - cpu0
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return float(data["wall"]), cpu, str(data["text"]), int(data["encodes"])


def recordings(names: list[str]) -> dict[str, tuple[Path, str | None]]:
    """Recording name -> (wav path, reference text)."""
    from testkit.corpus import build
    from testkit.evaluate import cache_dir
    from testkit.speech import meeting_wav

    out: dict[str, tuple[Path, str | None]] = {}
    real = [n for n in names if not n.startswith("flite")]
    if real:
        built = build(cache_dir(None))
        out.update({n: (built[n].path, built[n].text) for n in real if not n.startswith("real")})
        for name in (n for n in real if n.startswith("real")):
            out[name] = long_meeting(built, float(name.removeprefix("real")) * 60)
    for name in (n for n in names if n.startswith("flite")):
        repeat = int(name.removeprefix("flite") or 1)
        path, turns = meeting_wav(Path(tempfile.mkdtemp(prefix="flowbot-cost-")), repeat=repeat)
        out[name] = (path, " ".join(t.text for t in sorted(turns, key=lambda t: t.start)))
    return out


#: The real recordings a ``realN`` meeting goes round, in this order.
LONG_MEETING_PARTS = ("returning", "concat", "squeezed")


def long_meeting(built: dict[str, Recording], seconds: float) -> tuple[Path, str]:
    """A real meeting of about ``seconds``: :data:`LONG_MEETING_PARTS` in turn, 1 s apart (wav path, reference)."""
    from testkit.corpus import SR, read_wav, write_wav

    gap = np.zeros(SR, np.int16)
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    while total < seconds * SR:
        for name in LONG_MEETING_PARTS:
            parts += [read_wav(built[name].path), gap]
            texts.append(built[name].text)
            total += len(parts[-2]) + len(gap)
            if total >= seconds * SR:
                break
    folder = Path(tempfile.mkdtemp(prefix="flowbot-cost-"))
    return write_wav(folder / f"real-{round(seconds)}s.wav", np.concatenate(parts)), " ".join(texts)


def excerpt(path: Path, seconds: float = 30.0) -> Path:
    """The first ``seconds`` of the wav at ``path``, in a new temporary file."""
    from testkit.corpus import SR, read_wav, write_wav

    folder = Path(tempfile.mkdtemp(prefix="flowbot-cost-"))
    return write_wav(folder / "excerpt.wav", read_wav(path)[: round(seconds * SR)])


def warm_up(runs: list[tuple[str, str, Path]], path: Path, model: str, bytecode: Path) -> None:
    """One untimed run of every (label, system, tree) on ``path``: fills ``bytecode`` with what each imports."""
    for label, system, tree in runs:
        run(tree, path, system, model, bytecode)
        print(f"warm-up {label}: bytecode cached", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Alternate every (tree, system) on every recording; print one markdown table of best wall and CPU seconds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the tree to compare with (an unpacked commit)")
    parser.add_argument("--recordings", default="concat,flite1,flite6")
    parser.add_argument("--systems", default="nodiar,defaults")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="bundled:tiny.en")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile every import from source in every run, as a PYTHONDONTWRITEBYTECODE box does (see child_env)",
    )
    args = parser.parse_args(argv)
    from flowbot.wer import wer

    trees = {"base": args.base.resolve(), "new": HERE}
    systems = [s for s in args.systems.split(",") if s]
    cases = recordings([n for n in args.recordings.split(",") if n])
    best: dict[tuple[str, str], float] = {}
    best_cpu: dict[tuple[str, str], float] = {}
    texts: dict[tuple[str, str], str] = {}
    encodes: dict[tuple[str, str], int] = {}
    runs = [("bare", "bare", HERE)] + [(f"{t} {s}", s, tree) for s in systems for t, tree in trees.items()]
    bytecode = None if args.no_bytecode else Path(tempfile.mkdtemp(prefix="flowbot-cost-pyc-"))
    if bytecode is not None:
        warm_up(runs, excerpt(next(iter(cases.values()))[0]), args.model, bytecode)
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for name, (path, _ref) in cases.items():
            for label, system, tree in runs:
                wall, cpu, text, encodes[(name, label)] = run(tree, path, system, args.model, bytecode)
                best[(name, label)] = min(wall, best.get((name, label), float("inf")))
                best_cpu[(name, label)] = min(cpu, best_cpu.get((name, label), float("inf")))
                texts[(name, label)] = text
                load.append(os.getloadavg()[0])
                enc = encodes[(name, label)]
                print(f"{name} {label}: {wall:.2f} s wall, {cpu:.2f} CPU s, {enc} encodes", file=sys.stderr, flush=True)
    labels = [f"{t} {s}" for s in systems for t in trees]
    print(
        f"model {args.model}, {os.cpu_count()} cores (shared), best of {args.repeat}, model load included; "
        f"load average {min(load):.1f}-{max(load):.1f} during the run, "
        f"{'every import compiled from source' if bytecode is None else 'bytecode cached by a warm-up run'}\n"
    )
    print("wall s / CPU s (x bare wall / x bare CPU, WER %, encoder passes)\n")
    print("| recording | bare | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for name, (_path, ref) in cases.items():
        bare, bare_cpu = best[(name, "bare")], best_cpu[(name, "bare")]
        cells = []
        for lb in labels:
            wall, cpu = best[(name, lb)], best_cpu[(name, lb)]
            w = f", {100 * wer(ref, texts[(name, lb)]):.1f}" if ref else ""
            cells.append(
                f"{wall:.2f} / {cpu:.1f} ({wall / bare:.2f}x / {cpu / bare_cpu:.2f}x{w}, {encodes[(name, lb)]})"
            )
        enc = encodes[(name, "bare")]
        print(f"| {name} | {bare:.2f} / {bare_cpu:.1f} ({enc}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

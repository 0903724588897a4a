"""Transcript quality on real recorded speech: the pipeline next to whole-file runs, in one run.

For each recording of the real-speech development set (testkit/corpus.py:
pyannote's two-speaker telephone sample, a six-speaker concatenation with short
gaps, 60 s of speech with every pause squeezed under 150 ms) and the flite
planning meeting, it prints:

- WER: the words, speakers ignored;
- cpWER: who said what (CHiME-6 concatenated minimum-permutation WER over speakers);
- DER: who spoke when (pyannote.metrics, no collar, overlapping speech counted);

for three systems with the same models (bundled tiny.en, beam 5; the offline
pyannote pipeline):

- ``pipeline``: ``flowbot transcribe``'s path (producer, stream, ~30 s windows,
  session speaker registry, store; RTTM from the stored diarization turns);
- ``faster-whisper``: the whole file in one ``transcribe`` call (WER only);
- ``pyannote``: the whole file in one diarization call (DER), and its words
  attributed to it (cpWER of faster-whisper + pyannote on the whole file).

    .venv/bin/python -m bench.quality [--recordings sample,concat,squeezed,flite] [--cache DIR] [--no-naming]

It then prints naming precision and recall (names that follow a voice, bench/voices.py).

A shared, busy machine changes the timings, not the scores: decoding is deterministic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from contracts.settings import Settings
from testkit.corpus import Recording, Utterance, build
from testkit.evaluate import (
    cache_dir,
    run_pipeline,
    score,
    whole_file_asr,
    whole_file_diarization,
    whole_file_run,
)


def flite_meeting(folder: Path) -> Recording:
    """The test suite's three-voice flite meeting (clean pauses) as a scored recording."""
    from testkit.speech import meeting_wav

    path, turns = meeting_wav(folder, repeat=1)
    utts = tuple(Utterance(t.speaker, t.start, t.end, t.text) for t in turns)
    return Recording("flite", path, utts, None, {"source": "flite voices, testkit/speech.py"})


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", default="sample,concat,squeezed,flite")
    parser.add_argument("--cache", type=Path, default=None, help="where the development set is built")
    parser.add_argument("--no-naming", action="store_true", help="skip naming by voice (bench/voices.py)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from processor.build import build_engine_parts

    cache = cache_dir(args.cache)
    recordings = build(cache)
    recordings["flite"] = flite_meeting(cache / "flite")
    names = [n.strip() for n in args.recordings.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="flowbot-quality-") as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp), diarization="offline", interim_seconds=0.0)
        parts = build_engine_parts(settings)
        rows = []
        for name in names:
            rec = recordings[name]
            t0 = time.perf_counter()
            run = run_pipeline(rec, settings, parts)
            t1 = time.perf_counter()
            asr = whole_file_asr(rec, parts.transcriber)
            t2 = time.perf_counter()
            diarization = whole_file_diarization(rec, parts.diarizer)
            t3 = time.perf_counter()
            pipe = score(rec, run)
            fw = score(rec, whole_file_run(asr))
            both = score(rec, whole_file_run(asr, diarization))
            cuts = {k[4:]: v for k, v in run.counters.items() if k.startswith("cut_")}
            rows.append(
                (
                    f"{name} ({rec.duration:.0f} s, {len(rec.speaker_texts())} spk)",
                    f"{len(run.windows)} ({', '.join(f'{v} {k}' for k, v in sorted(cuts.items())) or 'no cut'})",
                    _pct(pipe["wer"]),
                    _pct(pipe["cpwer"]),
                    _pct(pipe.get("der")),
                    str(len(run.speakers)),
                    _pct(fw["wer"]),
                    _pct(both.get("der")),
                    _pct(both["cpwer"]),
                    f"{t1 - t0:.0f} / {t2 - t1 + t3 - t2:.0f}",
                )
            )
            print(f"{name}: done", file=sys.stderr, flush=True)
        naming = None
        if not args.no_naming:
            from bench.voices import naming_run, naming_table

            naming = naming_table(naming_run(cache, settings, parts), settings)
    header = (
        "recording",
        "windows (cuts)",
        "pipeline WER %",
        "pipeline cpWER %",
        "pipeline DER %",
        "pipeline speakers",
        "faster-whisper whole-file WER %",
        "pyannote whole-file DER %",
        "whole-file cpWER %",
        "wall s pipeline / whole-file",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if naming is not None:
        print()
        print(naming)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

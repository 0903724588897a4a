"""Transcript quality on real recorded speech: the pipeline next to whole-file runs, in one run.

For each recording of the real-speech development set (testkit/corpus.py:
pyannote's two-speaker telephone sample, a six-speaker concatenation with short
gaps, 60 s of speech with every pause squeezed under 150 ms, a six-speaker
meeting where voices come back) and the flite planning meeting, it prints the
speaker figures side by side:

- WER: the words, speakers ignored;
- cpWER: who said what (CHiME-6 concatenated minimum-permutation WER over speakers),
  and cpWER - WER: the points that speaker attribution costs;
- speakers found against the true number (speaker-count error);
- DER: who spoke when (pyannote.metrics, no collar, overlapping speech counted);

for three systems with the same models (bundled tiny.en, beam 5; the offline
pyannote pipeline):

- ``pipeline, live labels``: ``flowbot transcribe``'s path (producer, stream,
  ~30 s windows, session speaker registry, store; RTTM from the stored
  diarization turns) with the labels as viewers saw them live;
- ``pipeline, reconciled``: the same run after the end-of-meeting speaker
  reconciliation (control/speakers.py), as the final transcript and notes have it;
- ``whole file``: faster-whisper over the whole file in one call, its words
  attributed to pyannote run over the whole file in one call.

    .venv/bin/python -m bench.quality [--recordings sample,concat,squeezed,returning,flite] [--cache DIR] [--no-naming]
                                      [--turn-check on|off] [--new-voices on|off] [--shift 0.3,0.5,0.7]

``--turn-check off`` runs the pipeline without checking each diarized turn's voice
(``FLOWBOT_SPEAKER_TURN_CHECK``, docs/diarization.md), as before issue 21's turn check.
``--new-voices on`` gives a turn that sounds like no speaker of its window a speaker of
its own (``FLOWBOT_SPEAKER_NEW_VOICES``, on by default; ``off`` keeps it with its window speaker).

``--shift 0.3,0.5,0.7`` also runs the pipeline on each recording with that many seconds of
silence in front (references moved along, testkit/corpus.py ``shifted``), so that the ~30 s
window cuts fall elsewhere in the same speech, and prints each pipeline figure unshifted next
to its min-max over the shifts: how much of a figure is window-boundary noise. Shifts on
the 0.16 s grid keep Silero's 512-sample frames and Whisper's 160-sample hops aligned with
the unshifted run (docs/quality.md, "Window-boundary noise").

It then prints naming precision and recall (names that follow a voice, bench/voices.py).

A shared, busy machine changes the timings, not the scores: decoding is deterministic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.settings import Settings, Switch
from testkit.corpus import Recording, Utterance, build, shifted
from testkit.evaluate import (
    Run,
    cache_dir,
    run_live_and_final,
    score,
    whole_file_asr,
    whole_file_diarization,
    whole_file_run,
)

if TYPE_CHECKING:
    from processor.build import EngineParts


def flite_meeting(folder: Path) -> Recording:
    """The test suite's three-voice flite meeting (clean pauses) as a scored recording."""
    from testkit.speech import meeting_wav

    path, turns = meeting_wav(folder, repeat=1)
    utts = tuple(Utterance(t.speaker, t.start, t.end, t.text) for t in turns)
    return Recording("flite", path, utts, None, {"source": "flite voices, testkit/speech.py"})


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def speaker_figures(rec: Recording, run: Run) -> dict[str, float | int | None]:
    """WER, cpWER, cpWER - WER (points), speakers found, speaker-count error and DER of one run."""
    scores = score(rec, run)
    true = len(rec.speaker_texts())
    found = len(run.speakers)
    return {
        "wer": scores["wer"],
        "cpwer": scores["cpwer"],
        "attribution": scores["cpwer"] - scores["wer"],
        "found": found,
        "true": true,
        "count_error": found - true,
        "der": scores.get("der"),
    }


def _row(name: str, system: str, fig: dict[str, float | int | None]) -> tuple[str, ...]:
    return (
        name,
        system,
        _pct(fig["wer"]),
        _pct(fig["cpwer"]),
        f"{100 * float(fig['attribution'] or 0):+.1f}",
        f"{fig['found']} / {fig['true']}",
        f"{int(fig['count_error'] or 0):+d}",
        _pct(fig["der"]),
    )


#: The figures of the boundary-noise table: key of ``speaker_figures``, column title, format.
NOISE_FIGURES = (
    ("wer", "WER %", lambda v: f"{100 * v:.1f}"),
    ("attribution", "cpWER - WER", lambda v: f"{100 * v:+.1f}"),
    ("der", "DER %", lambda v: f"{100 * v:.1f}"),
    ("found", "speakers found", lambda v: f"{v:.0f}"),
)


def _spread(base: float | None, shifted_values: list[float | None], fmt: Callable[[float], str]) -> str:
    """``base [min-max]`` of one figure over the shifts; a dash where a run has no value."""
    values = [v for v in shifted_values if v is not None]
    if base is None or not values:
        return "-"
    return f"{fmt(base)} [{fmt(min(values))} - {fmt(max(values))}]"


def boundary_noise(
    rec: Recording, settings: Settings, parts: EngineParts, shifts: list[float], base: tuple[Run, Run], folder: Path
) -> list[tuple[str, ...]]:
    """Rows (live, final) of each figure unshifted and its min-max with ``shifts`` s of silence in front."""
    figures: list[tuple[dict[str, float | int | None], dict[str, float | int | None]]] = []
    joins = [_joins(base[1], 0.0)]
    for seconds in shifts:
        moved = shifted(rec, seconds, folder)
        live, final = run_live_and_final(moved, settings, parts)
        figures.append((speaker_figures(moved, live), speaker_figures(moved, final)))
        joins.append(_joins(final, seconds))
        print(f"{rec.name} +{seconds:g} s: done", file=sys.stderr, flush=True)
    rows = []
    for index, labels in enumerate(("live", "final")):
        fig = speaker_figures(rec, base[index])
        cells = [_spread(_num(fig[key]), [_num(f[index][key]) for f in figures], fmt) for key, _, fmt in NOISE_FIGURES]
        rows.append((f"{rec.name} ({rec.duration:.0f} s)", labels, *cells, " / ".join(joins)))
    return rows


def _joins(run: Run, seconds: float) -> str:
    """Where the windows of ``run`` join, on the unshifted recording's clock."""
    return ", ".join(f"{join - seconds:.1f}" for join in run.joins) or "none"


def _num(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print two markdown tables: speakers, then windows and time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", default="sample,concat,squeezed,returning,flite")
    parser.add_argument("--cache", type=Path, default=None, help="where the development set is built")
    parser.add_argument("--no-naming", action="store_true", help="skip naming by voice (bench/voices.py)")
    parser.add_argument(
        "--turn-check",
        choices=[Switch.ON.value, Switch.OFF.value],
        default=Switch.ON.value,
        help="check each diarized turn's voice (FLOWBOT_SPEAKER_TURN_CHECK)",
    )
    parser.add_argument(
        "--new-voices",
        choices=[Switch.ON.value, Switch.OFF.value],
        default=Switch.ON.value,
        help="a turn unlike every speaker of its window gets a speaker of its own (FLOWBOT_SPEAKER_NEW_VOICES)",
    )
    parser.add_argument(
        "--shift",
        default="",
        help="seconds of silence put in front of each recording, comma-separated (window-boundary noise)",
    )
    args = parser.parse_args(argv)
    shifts = [float(x) for x in args.shift.split(",") if x.strip()]
    warnings.simplefilter("ignore")

    from processor.build import build_engine_parts

    cache = cache_dir(args.cache)
    recordings = build(cache)
    recordings["flite"] = flite_meeting(cache / "flite")
    names = [n.strip() for n in args.recordings.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="flowbot-quality-") as tmp:
        settings = Settings.from_env(
            {},
            data_dir=Path(tmp),
            diarization="offline",
            interim_seconds=0.0,
            speaker_turn_check=Switch(args.turn_check),
            speaker_new_voices=Switch(args.new_voices),
        )
        parts = build_engine_parts(settings)
        rows = []
        runs = []
        noise: list[tuple[str, ...]] = []
        for name in names:
            rec = recordings[name]
            t0 = time.perf_counter()
            live, final = run_live_and_final(rec, settings, parts)
            t1 = time.perf_counter()
            asr = whole_file_asr(rec, parts.transcriber)
            diarization = whole_file_diarization(rec, parts.diarizer)
            t2 = time.perf_counter()
            label = f"{name} ({rec.duration:.0f} s)"
            rows.append(_row(label, "pipeline, live labels", speaker_figures(rec, live)))
            rows.append(_row(label, "pipeline, reconciled (final)", speaker_figures(rec, final)))
            rows.append(
                _row(
                    label,
                    "whole file: faster-whisper + pyannote",
                    speaker_figures(rec, whole_file_run(asr, diarization)),
                )
            )
            cuts = {k[4:]: v for k, v in final.counters.items() if k.startswith("cut_")}
            runs.append(
                (
                    label,
                    f"{len(final.windows)} ({', '.join(f'{v} {k}' for k, v in sorted(cuts.items())) or 'no cut'})",
                    _pct(score(rec, whole_file_run(asr))["wer"]),
                    f"{t1 - t0:.0f} / {t2 - t1:.0f}",
                )
            )
            print(f"{name}: done", file=sys.stderr, flush=True)
            if shifts:
                noise += boundary_noise(rec, settings, parts, shifts, (live, final), Path(tmp) / "shifted")
        naming = None
        if not args.no_naming:
            from bench.voices import naming_run, naming_table

            naming = naming_table(naming_run(cache, settings, parts), settings)
    header = (
        "recording",
        "system",
        "WER %",
        "cpWER %",
        "cpWER - WER (points)",
        "speakers found / true",
        "speaker-count error",
        "DER %",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    timing = ("recording", "windows (cuts)", "faster-whisper whole-file WER %", "wall s pipeline / whole-file")
    print("| " + " | ".join(timing) + " |")
    print("|" + "---|" * len(timing))
    for run in runs:
        print("| " + " | ".join(run) + " |")
    if noise:
        print()
        print(f"Window-boundary noise: unshifted [min - max with {', '.join(f'{x:g}' for x in shifts)} s in front]")
        print()
        joins = "window joins s, unshifted / each shift"
        print(_table(("recording", "labels", *(title for _, title, _ in NOISE_FIGURES), joins), noise))
    if naming is not None:
        print()
        print(naming)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

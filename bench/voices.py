"""Naming speakers by voice on real recordings: precision, recall, false accepts, and the threshold.

The owner's two meetings of testkit/voices_corpus.py go through
``flowbot transcribe``'s path (testkit/naming.py): four voices are
remembered in the first, the second is named by the end-of-session workflow.
Printed:

- naming precision (names that are right / names given), recall (enrolled
  voices named in the second meeting), and false accepts on the voices never
  enrolled, as the workflow named them with ``FLOWBOT_VOICE_MATCH_MIN_SCORE``;
- the never-enrolled voices that score at the threshold against any remembered voice, even
  where a better match took that voice (would be named if that voice's owner stayed away);
- the same figures re-scored at other thresholds (same scores, same rule);
- the score extremes the threshold sits between: the lowest same-voice and the
  highest other-voice similarity, in the second meeting against the remembered
  voices and across every speaker pair of the two meetings;
- how much of the speech under a name given by voice is that person's (a stranger's
  words the diarizer put under a named speaker carry a wrong name);
- wider trials from the same audio (:meth:`testkit.naming.NamingRun.rotations`): either
  meeting enrolls every voice it has and names the other, and each enrolled voice is left
  out in turn, so it faces the rest as a voice never enrolled.

    .venv/bin/python -m bench.voices [--cache DIR]

``bench/quality.py`` prints the first table through :func:`naming_table`.
Decoding and embedding are deterministic: a busy machine changes nothing here.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from contracts.settings import Settings
from processor.engine import EngineParts
from testkit.naming import NamingRun, run_pair
from testkit.voices_corpus import ENROLLED, build_pair

SWEEP = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


def naming_run(cache: Path, settings: Settings, parts: EngineParts | None) -> NamingRun:
    """The naming pair through the pipeline, as one owner's sessions in ``settings.data_dir``."""
    recs = build_pair(cache)
    return run_pair(recs["first"], recs["second"], ENROLLED, settings, parts, owner="bench-owner")


def _row(label: str, f: dict[str, float], exposed: int) -> str:
    return (
        f"| {label} | {f['named']:.0f} | {100 * f['precision']:.0f} | {100 * f['recall']:.0f} "
        f"({f['enrolled_present']:.0f} enrolled) | {f['false_accepts']:.0f} of {f['strangers']:.0f} | {exposed} |"
    )


def naming_table(run: NamingRun, settings: Settings, *, sweep: bool = False) -> str:
    """Markdown: naming precision and recall, false accepts on never-enrolled voices."""
    min_s = settings.voice_min_seconds
    threshold = settings.voice_match_min_score
    lines = [
        "| naming by voice | names given | precision % | recall % | never-enrolled voices named "
        "| never-enrolled voices at the threshold against any voice |",
        "|---|---|---|---|---|---|",
        _row(f"workflow, threshold {threshold:.2f}", run.figures(), len(run.strangers_over(threshold, min_s))),
    ]
    if sweep:
        for t in SWEEP:
            lines.append(_row(f"re-scored at {t:.2f}", run.figures(t, min_s), len(run.strangers_over(t, min_s))))
    return "\n".join(lines)


def rotation_table(run: NamingRun, settings: Settings) -> str:
    """Markdown: the wider trials of :meth:`testkit.naming.NamingRun.rotations`, at several thresholds."""
    lines = [
        "| threshold | enrolled people | named right % | named after another voice "
        "| stranger trials | strangers named (false-accept rate) | lowest same-voice score | highest stranger score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in SWEEP:
        r = run.rotations(t, settings.voice_min_seconds)
        mark = " (setting)" if abs(t - settings.voice_match_min_score) < 1e-9 else ""
        lines.append(
            f"| {t:.2f}{mark} | {r.enrolled} | {100 * r.recall:.0f} | {r.named_wrong} | {r.strangers} "
            f"| {r.false_accepts} ({100 * r.false_accept_rate:.0f} %) "
            f"| {r.lowest_same:.3f} | {r.highest_stranger:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the owner's two meetings and print the naming figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="where the recordings are built")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from processor.build import build_engine_parts
    from testkit.evaluate import cache_dir

    with tempfile.TemporaryDirectory(prefix="flowbot-voices-") as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp), diarization="offline", interim_seconds=0.0)
        run = naming_run(cache_dir(args.cache), settings, build_engine_parts(settings))
    print(naming_table(run, settings, sweep=True))
    print(f"\nnamed live, after a committed window: {sorted(run.named_live)} of {sorted(run.namings)}")
    right, total = run.named_speech()
    print(
        f"speech under a name given by voice that is that person's: {right:.1f} s of {total:.1f} s "
        f"({100 * right / total if total else 100:.1f} %)"
    )
    print("\nEvery voice of either meeting enrolled, the other meeting named; each enrolled voice left out in turn:\n")
    print(rotation_table(run, settings))
    margins = run.margins()
    same, other = run.cross_meeting(settings.voice_min_seconds)
    print()
    print("| similarity | same voice, lowest | other voice, highest |")
    print("|---|---|---|")
    print(f"| second meeting vs remembered voices | {margins['lowest_same']:.3f} | {margins['highest_other']:.3f} |")
    print(
        f"| every first- x second-meeting speaker pair ({len(same)} same, {len(other)} other) "
        f"| {min(same, default=float('nan')):.3f} | {max(other, default=float('nan')):.3f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

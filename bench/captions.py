"""Live caption latency and the cost of interim passes, interim on vs off, in one run.

Every run goes through ``flowbot serve``'s :class:`flowbot.serve.LiveService`:
a session is started through the coordinator API, a recording is replayed at
1x wall clock, and the session's SSE feed is read as a viewer would. The
recording (``--recording``) is the generated meeting (flite voices,
testkit/speech.py) or a real one of the registry corpus (testkit/corpus.py,
the recordings of tests/realspeech and bench/quality.py). ``--ingest stream``
writes it into the service's embedded stream (``flowbot ingest --realtime``'s
code path); ``--ingest rtmp`` publishes it with ffmpeg (``-re``, AAC) to the
session's RTMP URL, through the RTMP relay and decoder, as a meeting client
does, and ends the session through the API afterwards.

* **Caption latency**: for every word of the final transcript, the time from
  the word's end in the audio (replay start + word end) to the first feed event
  showing that word (same text, end within 1 s), interim or final. p50/p95 for
  interim on vs finals only.
* **Cost**: process CPU seconds per audio minute with interim on vs off.
* **Capacity**: N concurrent sessions replayed together; a level "holds" when
  every session's last final arrives within 15 s of its audio ending and, with
  interim on, caption p95 stays <= 5 s.
* **Final WER**: against the script, interim on vs off (same file, same model).
* **Stages** (interim on): for every word, spoken -> the first interim pass
  holding its audio starts (``wait``), that pass (``decode``), its end -> the
  word first shown (``after``: feed poll, or later passes when that one got the
  word wrong), and the share of words first shown only by final text.

    python -m bench.captions [--seconds 100] [--interval 2] [--levels 1,2,4] [--diarization offline]
                             [--recording flite|concat|returning|squeezed|sample] [--ingest stream|rtmp]
                             [--modes interim,finals-only]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from contracts.settings import Settings
from flowbot.wer import wer
from processor.build import check_loaded
from processor.interim import InterimWorker
from producer.decode import read_pcm
from testkit.captions import (
    Ingest,
    SessionRun,
    WordStages,
    first_final_lag,
    first_seen,
    ingest_lags,
    open_sessions,
    word_stages,
)
from testkit.captions import replay as replay_into
from testkit.service import live_service
from testkit.speech import meeting_wav, write_wav
from testkit.stats import percentile

RECORDINGS = ("flite", "concat", "returning", "squeezed", "sample")
MODES = ("interim", "finals-only")

log = logging.getLogger("bench.captions")


def replay(
    wav: Path,
    n_sessions: int,
    interval: float,
    data_dir: Path,
    diarization: str = "none",
    ingest: Ingest = "stream",
) -> tuple[list[SessionRun], float, dict[str, Any], list[WordStages]]:
    """Replay ``wav`` into ``n_sessions`` live sessions at once; runs, CPU seconds, interim counters, stages."""
    settings = Settings.from_env(
        {}, data_dir=data_dir, diarization=diarization, port=0, rtmp_port=0, interim_seconds=interval
    )
    with live_service(settings) as svc:
        # The diarizer loads in the background (processor/build.py): measure a running service.
        check_loaded(svc.processors.parts(), wait=True)
        finals_ran = record_finals(svc.processors.parts().interim)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        runs = open_sessions(svc, n_sessions)
        replay_into(svc, wav, runs, stagger=0.0, drain_timeout=300, ingest=ingest)
        store = svc.ctx.transcripts
        interim = svc.processors.parts().interim
        stages: list[WordStages] = []
        lags: list[float] = []
        queued: list[float] = []
        for run in runs:
            finals = store.segments(run.session_id)
            run.text = " ".join(s.text for s in finals)
            run.final_lag = first_final_lag(run)
            first_seen(run, finals)
            timings = getattr(interim, "timings", None)  # absent on trees before the stage breakdown
            if timings is not None:
                stages += word_stages(run, finals, timings(run.session_id))
                lags += ingest_lags(run, timings(run.session_id))
                queued += [t.started - t.offered_at for t in timings(run.session_id)]
                print_slow_words(run, finals, timings(run.session_id), finals_ran)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        stats = interim.stats() if isinstance(interim, InterimWorker) else {}
        if lags:
            print(
                f"  (ingest lag of a snapshot's last sample: median {_median(lags):.2f} s, max {max(lags):.2f} s; "
                f"snapshot age at its pass: median {_median(queued):.2f} s, "
                f"{sum(q > 0.3 for q in queued)} of {len(queued)} passes on a snapshot over 0.3 s old)"
            )
        return runs, cpu, stats, stages


def record_finals(interim: object) -> list[tuple[float, float]]:
    """(start, end) of every final ASR call from now on, read off the interim worker's gate (empty without one)."""
    ran: list[tuple[float, float]] = []
    gate = getattr(interim, "gate", None)
    if gate is None:
        return ran
    inner = gate.final

    @contextmanager
    def final() -> Iterator[None]:
        t0 = time.monotonic()
        with inner():
            yield
        ran.append((t0, time.monotonic()))

    gate.final = final
    return ran


def print_slow_words(
    run: SessionRun, finals: Sequence[Any], passes: Sequence[Any], finals_ran: list[tuple[float, float]]
) -> None:
    """Trace every word over 5 s: its stages, the pass that first held it, and final ASR calls near it."""
    slow = [ws for ws in word_stages(run, finals, passes) if ws.latency > 5.0]
    t0 = run.t0
    print(
        "  final ASR calls (start-end, s on the audio clock): "
        + ", ".join(f"{a - t0:.1f}-{b - t0:.1f}" for a, b in finals_ran)
    )
    print(
        "  passes (window: offered / started-finished, snapshot end on the session timeline): "
        + ", ".join(
            f"w{p.window_index}: {p.offered_at - t0:.1f}/{p.started - t0:.1f}-{p.finished - t0:.1f} "
            f"[{(p.start_sample + p.samples) / 16000:.1f}]"
            for p in passes
        )
    )
    print(f"  words over 5 s: {len(slow)}")
    for ws in slow:
        mine = [
            p for p in passes if p.window_index == ws.window_index and (p.start_sample + p.samples) / 16000 >= ws.end
        ]
        first = mine[0] if mine else None
        where = (
            f"first pass offered {first.offered_at - t0:.1f} ran {first.started - t0:.1f}-{first.finished - t0:.1f} "
            f"(snapshot to {(first.start_sample + first.samples) / 16000:.1f}), {len(mine)} passes held it"
            if first
            else "no pass held it"
        )
        print(
            f"    w{ws.window_index} {ws.text!r:14s} end {ws.end:5.1f} lat {ws.latency:5.2f} pipe {ws.pipe:5.2f} "
            f"behind {ws.behind:5.2f} dec {ws.decode:4.2f} after {ws.after:5.2f} final={ws.by_final}; {where}"
        )


def recording(name: str, tmp: Path, seconds: float) -> tuple[Path, str, float]:
    """The WAV to replay (the first ``seconds`` of the recording), its reference text, its length."""
    if name == "flite":
        path, turns = meeting_wav(tmp / "speech", repeat=1)
        spoken = [(t.end, t.text) for t in turns]
    else:
        from testkit.corpus import build, sample_recording
        from testkit.evaluate import cache_dir

        rec = sample_recording() if name == "sample" else build(cache_dir())[name]
        path = rec.path
        spoken = [(u.end, u.text) for u in sorted(rec.utterances, key=lambda u: u.start)]
    pcm = read_pcm(str(path))[: int(seconds * 16000)]
    reference = " ".join(text for end, text in spoken if end <= seconds)
    return write_wav(tmp / f"{name}-{seconds:g}s.wav", pcm), reference, pcm.size / 16000


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def print_stages(stages: list[WordStages]) -> None:
    """Median and p95 of each stage over the words an interim pass held, and how many only a final showed."""
    held = [w for w in stages if not math.isnan(w.wait)]
    if not stages:
        return
    print(f"stages (interim on; {len(held)} of {len(stages)} words in an interim pass's audio):")
    for name in ("latency", "wait", "framing", "pipe", "behind", "decode", "after"):
        values = [getattr(w, name) for w in held]
        print(f"  {name:8s} median {_median(values):6.2f} s  p95 {percentile(values, 95):6.2f} s")
    late = [w for w in held if w.after > 1.0]
    finals = sum(w.by_final for w in stages)
    print(
        f"  words first shown > 1 s after the first pass holding them: {len(late)} "
        f"(their latency median {_median([w.latency for w in late]):.2f} s); first shown by a final: {finals}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=100.0, help="meeting length for the latency runs")
    ap.add_argument("--interval", type=float, default=2.0, help="FLOWBOT_INTERIM_SECONDS when on")
    ap.add_argument("--levels", default="1,2,4", help="concurrent sessions to try for capacity")
    ap.add_argument("--capacity-seconds", type=float, default=45.0, help="audio per session in capacity runs")
    ap.add_argument(
        "--diarization",
        default=Settings().diarization,
        choices=("offline", "none"),
        help="FLOWBOT_DIARIZATION for every run (default: the settings default, as `flowbot serve` runs)",
    )
    ap.add_argument("--recording", default="flite", choices=RECORDINGS, help="what is replayed (flite or real)")
    ap.add_argument(
        "--ingest", default="stream", choices=("stream", "rtmp"), help="into the stream, or ffmpeg over RTMP"
    )
    ap.add_argument(
        "--modes",
        default="interim,finals-only",
        help="latency runs, in this order: interim, finals-only or both",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run the modes this many times, alternating")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        ap.error(f"--modes takes {', '.join(MODES)}")

    with TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wav, reference, seconds = recording(args.recording, tmp, args.seconds)
        cap_wav, _, _ = recording(args.recording, tmp, args.capacity_seconds)
        audio_min = seconds / 60
        print(
            f"{args.recording} {seconds:.0f} s over {args.ingest}, tiny.en int8, 2 CPU threads, "
            f"interim every {args.interval:g} s, diarization {args.diarization}; "
            f"load average {os.getloadavg()[0]:.2f} at the start"
        )
        every: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for k in range(args.repeat):
            for mode, figures in latency_runs(wav, reference, modes, args, tmp / f"r{k}", audio_min).items():
                every[mode].append(figures)
                print(
                    f"  run {k + 1} {mode:12s} p50 {figures['p50']:5.2f} s  p95 {figures['p95']:5.2f} s  "
                    f"(load average {figures['load']:.2f} at its start)"
                )
        print(f"load average {os.getloadavg()[0]:.2f} after the latency runs")
        if args.repeat > 1:
            print(f"median over {args.repeat} runs:")
            for mode, figs in every.items():
                p50s, p95s = [f["p50"] for f in figs], [f["p95"] for f in figs]
                print(f"  {mode:12s} p50 {statistics.median(p50s):5.2f} s  p95 {statistics.median(p95s):5.2f} s")
        print_latency({mode: figs[-1] for mode, figs in every.items()}, args.interval, audio_min)
        capacity(cap_wav, args, tmp)
    return 0


def latency_runs(
    wav: Path, reference: str, modes: list[str], args: argparse.Namespace, tmp: Path, audio_min: float
) -> dict[str, dict[str, Any]]:
    """One single-session run per mode; its figures."""
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        interval = 0.0 if mode == "finals-only" else args.interval
        load = os.getloadavg()[0]
        runs, cpu, stats, stages = replay(wav, 1, interval, tmp / f"lat-{mode}", args.diarization, args.ingest)
        r = runs[0]
        results[mode] = {
            "load": load,
            "p50": percentile(r.latencies, 50),
            "p95": percentile(r.latencies, 95),
            "words": len(r.latencies),
            "cpu_per_audio_min": cpu / audio_min,
            "wer": wer(reference, r.text),
            "final_lag": r.final_lag,
            "stats": stats.get(r.session_id, {}),
            "stages": stages,
        }
    return results


def print_latency(results: dict[str, dict[str, Any]], interval: float, audio_min: float) -> None:
    """The latency runs' figures, side by side."""
    print("caption latency (word end -> first shown in the live feed):")
    for mode, m in results.items():
        print(
            f"  {mode:12s} p50 {m['p50']:6.2f} s  p95 {m['p95']:6.2f} s  ({m['words']} words; "
            f"last final {m['final_lag']:.1f} s after the audio)"
        )
    on, off = results.get("interim"), results.get("finals-only")
    if on and off:
        print(f"  ratio finals-only/interim: p50 {off['p50'] / on['p50']:.1f}x  p95 {off['p95'] / on['p95']:.1f}x")
    print(
        "compute (process CPU seconds per audio minute): "
        + "  ".join(f"{mode} {m['cpu_per_audio_min']:.1f}" for mode, m in results.items())
    )
    if on and off:
        print(f"  ratio {on['cpu_per_audio_min'] / off['cpu_per_audio_min']:.2f}x")
    if on:
        s = on["stats"]
        if s:
            print(
                f"  interim passes {s['passes']} (audio decoded {s['audio_seconds']:.0f} s, "
                f"model {s['compute_seconds']:.1f} s, "
                f"{s['compute_seconds'] / audio_min:.1f} s per audio minute), written {s['written']}, "
                f"superseded {s['superseded']}, skipped for final {s['skipped_for_final']}, "
                f"stale {s['stale']}, rejected by final {s['rejected_final']}"
            )
        print_stages(on["stages"])
    print("final WER: " + "  ".join(f"{mode} {m['wer']:.3f}" for mode, m in results.items()))


def capacity(cap_wav: Path, args: argparse.Namespace, tmp: Path) -> None:
    """Levels of concurrent sessions, until one does not hold."""
    levels = [int(x) for x in args.levels.split(",") if x]
    if not levels:
        return
    print(f"capacity ({args.capacity_seconds:.0f} s of audio per session, sessions replayed together):")
    held: dict[str, int] = {}
    for mode, interval in (("interim", args.interval), ("finals-only", 0.0)):
        held[mode] = 0
        for n in levels:
            runs, cpu, _, _ = replay(cap_wav, n, interval, tmp / f"cap-{mode}-{n}", args.diarization, args.ingest)
            lags = [r.final_lag for r in runs]
            p95s = [percentile(r.latencies, 95) for r in runs]
            ok = max(lags) <= 15.0 and (interval == 0 or max(p95s) <= 5.0)
            print(
                f"  {mode:12s} {n:2d} sessions: worst final lag {max(lags):6.1f} s, "
                f"worst caption p95 {max(p95s):6.2f} s, cpu {cpu / (n * args.capacity_seconds / 60):.1f} "
                f"s/audio-min -> {'holds' if ok else 'does not hold'}"
            )
            if ok:
                held[mode] = n
            else:
                break
    print(
        f"  sessions held: interim {held['interim']}, finals-only {held['finals-only']} (levels tried: {args.levels})"
    )


if __name__ == "__main__":
    raise SystemExit(main())

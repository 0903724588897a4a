"""Live caption latency and the cost of interim passes, interim on vs off, in one run.

Every run goes through ``flowbot serve``'s :class:`flowbot.serve.LiveService`:
a session is started through the coordinator API, a generated meeting (flite
voices, testkit/speech.py) is replayed at 1x wall clock into the service's
embedded stream (``flowbot ingest --realtime``'s code path), and the session's
SSE feed is read as a viewer would.

* **Caption latency**: for every word of the final transcript, the time from
  the word's end in the audio (replay start + word end) to the first feed event
  showing that word (same text, end within 1 s), interim or final. p50/p95 for
  interim on vs finals only.
* **Cost**: process CPU seconds per audio minute with interim on vs off.
* **Capacity**: N concurrent sessions replayed together; a level "holds" when
  every session's last final arrives within 15 s of its audio ending and, with
  interim on, caption p95 stays <= 5 s.
* **Final WER**: against the script, interim on vs off (same file, same model).

    python -m bench.captions [--seconds 100] [--interval 2] [--levels 1,2,4] [--diarization offline]
"""

from __future__ import annotations

import argparse
import logging
import resource
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from contracts.settings import Settings
from flowbot.wer import wer
from processor.build import check_loaded
from producer.decode import read_pcm
from testkit.captions import SessionRun, first_seen, open_sessions
from testkit.captions import replay as replay_into
from testkit.service import live_service
from testkit.speech import meeting_wav, write_wav
from testkit.stats import percentile

log = logging.getLogger("bench.captions")


def replay(
    wav: Path, n_sessions: int, interval: float, data_dir: Path, diarization: str = "none"
) -> tuple[list[SessionRun], float, dict[str, Any]]:
    """Replay ``wav`` into ``n_sessions`` live sessions at once; returns runs and CPU seconds."""
    settings = Settings.from_env(
        {}, data_dir=data_dir, diarization=diarization, port=0, rtmp_port=0, interim_seconds=interval
    )
    with live_service(settings) as svc:
        # The diarizer loads in the background (processor/build.py): measure a running service.
        check_loaded(svc.processors.parts(), wait=True)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        runs = open_sessions(svc, n_sessions)
        replay_into(svc, wav, runs, stagger=0.0, drain_timeout=300)
        store = svc.ctx.transcripts
        for run in runs:
            finals = store.segments(run.session_id)
            run.text = " ".join(s.text for s in finals)
            final_times = [at for at, d in run.feed.timed() if d["is_final"]]
            run.final_lag = (max(final_times) - run.audio_end) if final_times else float("inf")
            first_seen(run, finals)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        interim = svc.processors.parts().interim
        stats = interim.stats() if interim is not None and hasattr(interim, "stats") else {}
        return runs, cpu, stats


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
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wav_full, turns = meeting_wav(tmp / "speech", repeat=1)
        pcm = read_pcm(str(wav_full))
        wav = write_wav(tmp / "latency.wav", pcm[: int(args.seconds * 16000)])
        cap_wav = write_wav(tmp / "capacity.wav", pcm[: int(args.capacity_seconds * 16000)])
        reference = " ".join(t.text for t in turns if t.end <= args.seconds)
        audio_min = min(args.seconds, pcm.size / 16000) / 60

        results: dict[str, Any] = {}
        for mode, interval in (("interim", args.interval), ("finals-only", 0.0)):
            runs, cpu, stats = replay(wav, 1, interval, tmp / f"lat-{mode}", args.diarization)
            r = runs[0]
            results[mode] = {
                "p50": percentile(r.latencies, 50),
                "p95": percentile(r.latencies, 95),
                "words": len(r.latencies),
                "cpu_per_audio_min": cpu / audio_min,
                "wer": wer(reference, r.text),
                "final_lag": r.final_lag,
                "stats": stats.get(r.session_id, {}),
            }
        on, off = results["interim"], results["finals-only"]
        print(
            f"audio {args.seconds:.0f} s, tiny.en int8, 2 CPU threads, interim every {args.interval:g} s, "
            f"diarization {args.diarization}"
        )
        print("caption latency (word end -> first shown in the live feed):")
        for mode in ("interim", "finals-only"):
            m = results[mode]
            print(f"  {mode:12s} p50 {m['p50']:6.2f} s  p95 {m['p95']:6.2f} s  ({m['words']} words)")
        print(f"  ratio finals-only/interim: p50 {off['p50'] / on['p50']:.1f}x  p95 {off['p95'] / on['p95']:.1f}x")
        print("compute (process CPU seconds per audio minute):")
        print(
            f"  interim {on['cpu_per_audio_min']:.1f}  finals-only {off['cpu_per_audio_min']:.1f}  "
            f"ratio {on['cpu_per_audio_min'] / off['cpu_per_audio_min']:.2f}x"
        )
        s = on["stats"]
        if s:
            print(
                f"  interim passes {s['passes']} (audio decoded {s['audio_seconds']:.0f} s, "
                f"model {s['compute_seconds']:.1f} s, "
                f"{s['compute_seconds'] / audio_min:.1f} s per audio minute), written {s['written']}, "
                f"superseded {s['superseded']}, skipped for final {s['skipped_for_final']}, "
                f"stale {s['stale']}, rejected by final {s['rejected_final']}"
            )
        print(f"final WER: interim {on['wer']:.3f}  finals-only {off['wer']:.3f}")

        levels = [int(x) for x in args.levels.split(",") if x]
        print(f"capacity ({args.capacity_seconds:.0f} s of audio per session, sessions replayed together):")
        held: dict[str, int] = {}
        for mode, interval in (("interim", args.interval), ("finals-only", 0.0)):
            held[mode] = 0
            for n in levels:
                runs, cpu, _ = replay(cap_wav, n, interval, tmp / f"cap-{mode}-{n}", args.diarization)
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
            f"  sessions held: interim {held['interim']}, finals-only {held['finals-only']} "
            f"(levels tried: {args.levels})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

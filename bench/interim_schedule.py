"""The interim schedule alone: how frame-record length and pass time set caption latency, side by side.

A live caption waits for its frame record to fill (1 s records today,
``contracts.frames.DEFAULT_FRAME_SAMPLES``), for the next interim pass to start
and for that pass to finish. This bench measures those without the model: the
real :class:`processor.interim.InterimWorker` (its thread, clock, duty cap 0.75
and interval) is offered a snapshot per record, as the engine does, with a
little arrival jitter as over RTMP; its model call is a sleep of a fixed pass
time (take it from ``bench.captions``' ``decode`` stage), so a busy machine
barely changes the figures. The latency of an audio instant is the end of the
first pass whose snapshot holds it; the arms run at the same time on separate
workers (they sleep, they do not compute).

    python -m bench.interim_schedule [--seconds 40] [--pass-seconds 1.2,1.6] [--records 1,0.5] [--interval 2]
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from contracts.frames import SAMPLE_RATE
from processor.asr import AsrResult, Transcriber
from processor.interim import InterimWorker
from processor.vad import Spans
from stores.sqlite import SqliteTranscriptStore
from testkit.stats import percentile


class SleepTranscriber(Transcriber):
    """A model call that takes ``seconds`` of wall time and hears nothing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """Sleep, then nothing heard."""
        time.sleep(self.seconds)
        return AsrResult()


def arm(store: SqliteTranscriptStore, pass_s: float, record_s: float, args: argparse.Namespace) -> list[float]:
    """Feed one worker a record every ``record_s`` for ``args.seconds``; latency of every 50 ms audio instant."""
    worker = InterimWorker(SleepTranscriber(pass_s), store, interval=args.interval, max_duty=0.75).start()
    sid = f"s-{pass_s}-{record_s}"
    rng = random.Random(7)
    t0 = time.monotonic()
    samples = int(record_s * SAMPLE_RATE)
    for k in range(1, int(args.seconds / record_s) + 1):
        due = t0 + k * record_s + args.pipe + rng.uniform(0, args.jitter)
        time.sleep(max(0.0, due - time.monotonic()))
        worker.offer(sid, 0, 0, np.zeros(k * samples, np.int16))
    worker.wait_idle(timeout=30)
    worker.stop()
    passes = worker.timings(sid)
    out = []
    for t in np.arange(0.05, int(args.seconds) - 1, 0.05):
        ends = [p.finished for p in passes if (p.start_sample + p.samples) / SAMPLE_RATE >= t]
        if ends:
            out.append(min(ends) - (t0 + float(t)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0, help="records offered per arm (one a second)")
    ap.add_argument("--pass-seconds", default="1.2,1.6", help="model time of one pass, one set of arms each")
    ap.add_argument("--records", default="1,0.5", help="frame record lengths to compare, seconds")
    ap.add_argument("--interval", type=float, default=2.0, help="FLOWBOT_INTERIM_SECONDS")
    ap.add_argument("--pipe", type=float, default=0.05, help="seconds from a record's last sample to its offer")
    ap.add_argument("--jitter", type=float, default=0.1, help="uniform extra arrival delay per record, seconds")
    args = ap.parse_args()
    pass_times: Sequence[float] = [float(x) for x in args.pass_seconds.split(",") if x]
    records: Sequence[float] = [float(x) for x in args.records.split(",") if x]
    with TemporaryDirectory() as tmp:
        store = SqliteTranscriptStore(Path(tmp) / "t.db")
        results: dict[tuple[float, float], list[float]] = {}

        def run(pass_s: float, record_s: float) -> None:
            results[(pass_s, record_s)] = arm(store, pass_s, record_s, args)

        threads = [threading.Thread(target=run, args=(p, r)) for p in pass_times for r in records]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(
        f"interval {args.interval:g} s, duty cap 0.75, a record's offer {args.pipe:g} s (+ up to {args.jitter:g} s) "
        "after its last sample; latency of an audio instant = its record filling + offer + the first pass holding it"
    )
    for pass_s in pass_times:
        for record_s in records:
            lat = results[(pass_s, record_s)]
            print(
                f"  pass {pass_s:.1f} s, records of {record_s:g} s: "
                f"p50 {percentile(lat, 50):5.2f} s  p95 {percentile(lat, 95):5.2f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

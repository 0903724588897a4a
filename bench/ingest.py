"""RTMP ingest capacity on this machine: CPU per live stream, and how many streams keep up.

For N = 1, 2, 4, ... ffmpeg publishers stream a pre-encoded AAC/FLV file at real time
(``-re -c copy``, so the publishers themselves cost little) into one RtmpRelay (and its
IngestHub) writing to an embedded stream. Measured per step, in one run:

- CPU of the ingest process (all its threads) / wall time, total and per stream;
- lag = wall time since a session's first audio - audio written for it (seconds),
  worst over all sessions and samples after a 3 s warm-up. Frame records are ~1 s,
  so a lag near 1 s is keeping up; a lag that grows with time is falling behind.

Run: ``.venv/bin/python -m bench.ingest [--seconds 20] [--max-streams 32]``.
The publishers run on the same 2 cores, so the figure is a floor for a dedicated box.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contracts.frames import SAMPLE_RATE
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from streams.embedded import EmbeddedStream

KEEPS_UP_LAG_S = 2.0


def _source(folder: Path, seconds: float) -> Path:
    """Speech-like audio (flite) looped to ``seconds``, pre-encoded as AAC in FLV."""
    wav = folder / "speech.wav"
    subprocess.run(
        ["flite", "-voice", "slt", "-t", "This is a benchmark of live meeting ingest over RTMP. " * 3, "-o", str(wav)],
        check=True,
    )
    flv = folder / "speech.flv"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(wav),
            "-t",
            str(seconds),
            "-c:a",
            "aac",
            "-ar",
            "44100",
            "-f",
            "flv",
            str(flv),
        ],
        check=True,
    )
    return flv


def run_step(n: int, flv: Path, seconds: float, folder: Path) -> dict[str, float]:
    """Publish ``n`` real-time streams at once; return CPU and lag figures."""
    stream = EmbeddedStream(folder / f"stream-{n}.db")
    hub = IngestHub(stream)
    # All n publishers connect at once from one address: the default caps (64, a quarter of
    # them waiting to publish, 4 per source) would push some out and measure the caps, not capacity.
    rtmp = RtmpRelay(hub, "127.0.0.1", 0, max_connections=max(64, n), max_unpublished=n, max_unpublished_per_source=n)
    rtmp.start()
    sids = [f"bench-{n}-{i}" for i in range(n)]
    for sid in sids:
        hub.register(sid, f"key-{sid}")
    first_audio: dict[str, float] = {}
    cpu0, wall0 = time.process_time(), time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-i",
                str(flv),
                "-c",
                "copy",
                "-f",
                "flv",
                f"rtmp://127.0.0.1:{rtmp.port}/live/key-{sid}",
            ]
        )
        for sid in sids
    ]
    worst_lag = 0.0
    lag_at_end = 0.0
    while any(p.poll() is None for p in procs):
        time.sleep(0.5)
        now = time.monotonic()
        for sid in sids:
            samples = hub.stats(sid).samples
            if samples and sid not in first_audio:
                first_audio[sid] = now - samples / SAMPLE_RATE
            if sid in first_audio and now - first_audio[sid] > 3.0:
                lag = (now - first_audio[sid]) - samples / SAMPLE_RATE
                worst_lag = max(worst_lag, lag)
                lag_at_end = lag
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    deadline = time.monotonic() + 30
    while any(hub.stats(s).connected for s in sids) and time.monotonic() < deadline:
        time.sleep(0.1)
    got = [hub.stats(s).samples / SAMPLE_RATE for s in sids]
    rtmp.stop()
    stream.close()
    return {
        "streams": n,
        "cpu_total": cpu / wall,
        "cpu_per_stream": cpu / wall / n,
        "worst_lag_s": worst_lag,
        "last_lag_s": lag_at_end,
        "min_audio_s": min(got),
        "expected_s": seconds,
    }


def main() -> int:
    """Ramp the number of concurrent publishers and print one row per step."""
    parser = argparse.ArgumentParser(description="RTMP ingest capacity benchmark")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-streams", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flv = _source(folder, args.seconds)
        print(
            f"{'streams':>7} {'cpu total':>10} {'cpu/stream':>10} {'worst lag':>10} {'last lag':>9} {'min audio':>10}"
        )
        best = 0
        n = 1
        while n <= args.max_streams:
            r = run_step(n, flv, args.seconds, folder)
            ok = r["worst_lag_s"] < KEEPS_UP_LAG_S and r["min_audio_s"] > args.seconds - 1.0
            print(
                f"{n:>7} {r['cpu_total']:>9.1%} {r['cpu_per_stream']:>9.2%} "
                f"{r['worst_lag_s']:>9.2f}s {r['last_lag_s']:>8.2f}s "
                f"{r['min_audio_s']:>9.2f}s {'keeps up' if ok else 'FALLS BEHIND'}",
                flush=True,
            )
            if not ok:
                break
            best = n
            n *= 2
        print(
            f"streams one RtmpRelay kept up with on this machine: {best} "
            f"(lag < {KEEPS_UP_LAG_S} s, all audio delivered)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Segments per second the Supabase sink writes through PostgREST, batched vs one row a request.

Runs the tests' local stack (PostgreSQL 15 + PostgREST 12 behind the loopback
/rest/v1 gateway; see testkit/supabase_stack.py), then, side by side in
one run:

* batched: ``SupabaseTranscriptStore.commit_window`` — one RPC per window that
  replaces the window's segments and writes window + progress in one
  transaction (what the processor does);
* per-row: the same segments upserted one request each through supabase-py
  (the naive sink), without the window/progress rows, so it does less work.

Prints segments/s for each and the ratio. The gateway opens one upstream
connection per request (Supabase's own gateway keeps connections alive), which
penalises per-request overhead on both paths alike.

    .venv/bin/python -m bench.supabase_sink [--windows 30] [--segments 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from contracts.segments import TranscriptSegment, WindowRecord, Word
from stores.base import Session, SessionProgress, SessionState
from stores.supabase import SupabaseMeetingStatus, SupabaseTranscriptStore
from testkit.supabase_stack import SupabaseStack


def make_segments(sid: str, win: int, n: int) -> list[TranscriptSegment]:
    """``n`` realistic segments (12 words each) of one window."""
    out = []
    for i in range(n):
        start = win * 30.0 + i * (30.0 / n)
        words = tuple(Word(start + 0.1 * k, start + 0.1 * k + 0.08, f"word{k}", 0.93, "S1") for k in range(12))
        out.append(
            TranscriptSegment(
                sid,
                win,
                i,
                start,
                start + 1.2,
                " ".join(w.text for w in words),
                speaker="S1",
                words=words,
                avg_logprob=-0.21,
                audio_uri=f"s3://b/{sid}/{win}.flac",
            )
        )
    return out


def register(meetings: SupabaseMeetingStatus) -> str:
    sid = "bench-" + uuid.uuid4().hex[:10]
    meetings.register_session(Session(sid, "m-" + sid, str(uuid.uuid4()), "bench", "k-" + sid, SessionState.LIVE))
    return sid


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--segments", type=int, default=20, help="segments per window")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    stack = SupabaseStack().start()
    try:
        store = SupabaseTranscriptStore(stack.url, stack.service_key)
        meetings = SupabaseMeetingStatus(stack.url, stack.service_key)
        client = store._db  # the same supabase-py client, for the per-row baseline
        batched: list[float] = []
        per_row: list[float] = []
        for _ in range(args.rounds):
            sid = register(meetings)
            windows = [make_segments(sid, w, args.segments) for w in range(args.windows)]
            t0 = time.perf_counter()
            for w, segs in enumerate(windows):
                store.commit_window(
                    WindowRecord(sid, w, w * 480_000, (w + 1) * 480_000),
                    segs,
                    SessionProgress(sid, w + 1, (w + 1) * 480_000),
                )
            batched.append(args.windows * args.segments / (time.perf_counter() - t0))

            sid = register(meetings)
            # A third of the rows is enough for a rate; it is the slow path.
            rows = [s for w in range(max(1, args.windows // 3)) for s in make_segments(sid, w, args.segments)]
            t0 = time.perf_counter()
            for s in rows:
                data = s.to_dict()
                data.pop("version")
                client.table("transcript_segments").upsert(
                    data,
                    on_conflict="session_id,window_index,segment_index",
                    returning="minimal",  # type: ignore[arg-type]
                ).execute()
            per_row.append(len(rows) / (time.perf_counter() - t0))
        b, p = statistics.median(batched), statistics.median(per_row)
        print(
            f"segments per window: {args.segments}, windows per round: {args.windows}, rounds: {args.rounds} (median)"
        )
        print(f"{'path':<34}{'segments/s':>12}")
        print(f"{'batched (1 RPC per window)':<34}{b:>12.0f}")
        print(f"{'per-row upsert (1 request/segment)':<34}{p:>12.0f}")
        print(f"ratio batched / per-row: {b / p:.1f}x")
        print(f"windows/s batched: {b / args.segments:.1f}")
    finally:
        stack.close()


if __name__ == "__main__":
    main()

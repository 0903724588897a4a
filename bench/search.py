"""Search across many meetings: query latency on the store's real engine (issue 23).

Builds ``--meetings`` (1,000) one-hour meetings of synthetic transcript in a SQLite store through
:meth:`SqliteTranscriptStore.commit_window` (the processor's write path, so the FTS5 index is
filled by the same triggers as in production), then runs ``--queries`` searches the way the API
does (:func:`control.library.search_meetings`, every session readable) and reports latency per
kind of query.

Synthetic speech: 150 words a minute in segments of 8-24 words, words drawn from a 20,000-word
vocabulary with Zipf's law (exponent 1.1), so a few words are in most segments and most words are
rare, as in real transcripts. Queries: one content word of middling frequency (what people look
for: a name, a topic), two such words, and one very common word (a worst case: it matches most of
the corpus and every match is ranked).

Target: p95 <= 50 ms over 1,000 one-hour meetings on 2 cores.

    .venv/bin/python -m bench.search [--meetings 1000] [--queries 200] [--db PATH]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import TranscriptSegment, WindowRecord
from control.access import LOCAL, Caller
from control.library import search_meetings
from stores.base import Session, SessionProgress
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore

VOCABULARY = 20_000
WORDS_PER_SECOND = 2.5
WINDOW_SECONDS = 30.0


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


def _zipf_weights(n: int, exponent: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def build(db: Path, meetings: int, minutes: float, seed: int = 7) -> tuple[list[str], float]:
    """Write the corpus; returns the vocabulary (by rank) and seconds spent writing."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    nprng = np.random.default_rng(seed)
    weights = _zipf_weights(len(vocab))
    sessions, transcripts = SqliteSessionStore(db), SqliteTranscriptStore(db)
    t0 = time.perf_counter()
    words_per_meeting = int(minutes * 60 * WORDS_PER_SECOND) + 64
    for m in range(meetings):
        sid = f"bench-{m:05d}"
        sessions.create(Session(sid, f"m{m}", "bench", f"Meeting {m}", f"k{m}", created_at=1e9 + m))
        drawn = iter(nprng.choice(len(vocab), size=words_per_meeting, p=weights).tolist())
        t, window = 0.0, 0
        while t < minutes * 60:
            segs: list[TranscriptSegment] = []
            seg_t = t
            while seg_t < t + WINDOW_SECONDS:
                n = int(nprng.integers(8, 25))
                text = " ".join(vocab[next(drawn, 0)] for _ in range(n))
                dur = n / WORDS_PER_SECOND
                speaker = f"S{len(segs) % 4 + 1}"
                segs.append(TranscriptSegment(sid, window, len(segs), seg_t, seg_t + dur, text, speaker))
                seg_t += dur
            end = int(seg_t * SAMPLE_RATE)
            transcripts.commit_window(
                WindowRecord(sid, window, int(t * SAMPLE_RATE), end), segs, SessionProgress(sid, window + 1, end)
            )
            t, window = seg_t, window + 1
    return vocab, time.perf_counter() - t0


def run(db: Path, vocab: list[str], queries: int, seed: int = 11) -> dict[str, list[float]]:
    """Latency (ms) of each query kind, searching as the API does."""
    rng = random.Random(seed)
    sessions, transcripts = SqliteSessionStore(db), SqliteTranscriptStore(db)
    caller = Caller(None, LOCAL)
    middling = vocab[200:5000]  # by rank: in hundreds to thousands of segments each, like names and topics
    kinds = {
        "one word": lambda: rng.choice(middling),
        "two words": lambda: f"{rng.choice(middling)} {rng.choice(vocab[50:1000])}",
        "very common word": lambda: rng.choice(vocab[:5]),
    }
    out: dict[str, list[float]] = {}
    for _ in range(20):  # warm the page cache, as a serving process is; not counted
        search_meetings(sessions, transcripts, caller, rng.choice(middling), limit=20)
    for kind, make in kinds.items():
        times = []
        for _ in range(queries):
            q = make()
            t0 = time.perf_counter()
            search_meetings(sessions, transcripts, caller, q, limit=20)
            times.append((time.perf_counter() - t0) * 1000)
        out[kind] = times
    return out


def main() -> None:
    """Build (or reuse) the corpus, run the queries, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meetings", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--db", type=Path, help="keep the corpus here (reused when it exists)")
    args = ap.parse_args()
    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="flowbot-search-")
        db = Path(tmp.name) / "flowbot.db"
    if db.exists():
        vocab = _vocabulary(random.Random(7))
        print(f"reusing {db}")
    else:
        vocab, seconds = build(db, args.meetings, args.minutes)
        print(f"built {args.meetings} meetings of {args.minutes:g} min in {seconds:.0f} s")
    t0 = time.perf_counter()
    SqliteTranscriptStore(db)  # opening a file that is already indexed
    opened = (time.perf_counter() - t0) * 1000
    conn = SqliteTranscriptStore(db)._db.conn()
    (segments,) = conn.execute("SELECT count(*) FROM segments").fetchone()
    print(f"{segments:,} segments, {db.stat().st_size / 2**20:,.0f} MiB on disk; opening the store: {opened:.0f} ms")
    results = run(db, vocab, args.queries)
    print(f"\n| query ({args.queries} each) | p50 ms | p95 ms | max ms |\n|---|---|---|---|")
    for kind, times in results.items():
        p50, p95 = np.percentile(times, [50, 95])
        print(f"| {kind} | {p50:.1f} | {p95:.1f} | {max(times):.1f} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

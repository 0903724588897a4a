"""Caption latency of sessions replayed into a live service, and when a level of sessions holds.

Shared by bench/captions.py and bench/gpu_capacity.py (and their tests): a
generated or real recording is replayed at 1x wall clock into new sessions of a
:class:`flowbot.serve.LiveService`, each session's feed is read as a viewer
would, and every final word is timed from its end in the audio to the first
feed event that showed it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.segments import TranscriptSegment
from flowbot.wer import normalize
from testkit.service import start_session
from testkit.sse import FeedReader
from testkit.stats import percentile

if TYPE_CHECKING:
    from flowbot.serve import LiveService
    from stores.base import TranscriptStore


@dataclass
class SessionRun:
    """One replayed session: its feed, when its audio started and ended, and its word latencies."""

    session_id: str
    feed: FeedReader
    t0: float = 0.0
    audio_end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    final_lag: float = float("inf")
    text: str = ""


def first_seen(run: SessionRun, finals: Sequence[TranscriptSegment]) -> None:
    """Per final word: when it (same text, end within 1 s) first appeared in the feed."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for at, data in run.feed.timed():
        for seg in data["segments"]:
            for w in seg["words"]:
                for token in normalize(w["text"]):
                    seen.setdefault(token, []).append((float(w["end"]), at))
    for seg in finals:
        for w in seg.words:
            tokens = normalize(w.text)
            if not tokens:
                continue
            times = [at for end, at in seen.get(tokens[0], []) if abs(end - w.end) <= 1.0]
            if times:
                run.latencies.append(min(times) - (run.t0 + w.end))


def open_sessions(svc: LiveService, n: int, timeout: float = 120.0) -> list[SessionRun]:
    """``n`` new sessions of ``svc``, each with its feed being read and connected.

    A feed counts as connected once its first event (the session's state, which the
    server sends every new viewer first) has arrived, so the audio never starts before
    its viewer is there; a loaded machine decides how long that takes, not a fixed pause.
    """
    runs = []
    for _ in range(n):
        sid = str(start_session(svc.url, meeting_id="bench")["session_id"])
        feed = FeedReader(f"{svc.url}/sessions/{sid}/events")
        feed.start()
        runs.append(SessionRun(sid, feed))
    _wait_until(lambda: all(r.feed.events or not r.feed.is_alive() for r in runs), timeout)
    return runs


def replay(svc: LiveService, wav: Path, runs: Sequence[SessionRun], stagger: float, drain_timeout: float) -> None:
    """Replay ``wav`` at 1x into every session at once (starts ``stagger`` s apart).

    Returns once every session is finished and its feed has shown all its finals
    (:func:`delivered`), or after ``drain_timeout`` s.
    """
    from producer.file_ingest import ingest_file

    def push(k: int, run: SessionRun) -> None:
        time.sleep(k * stagger)
        run.t0 = time.monotonic()
        ingest_file(str(wav), svc.stream, run.session_id, realtime=True)
        run.audio_end = time.monotonic()

    threads = [threading.Thread(target=push, args=(k, r)) for k, r in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = svc.ctx.transcripts
    _wait_until(lambda: all(delivered(store, r) for r in runs), drain_timeout)


def delivered(store: TranscriptStore, run: SessionRun) -> bool:
    """True once ``run``'s audio is all committed and its feed has shown every committed window as final.

    A finished session is not enough: the live feed polls the store, backing off to a
    read a second while a session is unchanged (flowbot/web/feed.py), so a window's
    final reaches a viewer up to about a second after its commit, more on a loaded
    machine. Measuring before it arrived reported a session with no final. A feed whose
    connection ended will show nothing more: waiting on it ends too.
    """
    progress = store.load_progress(run.session_id)
    if progress is None or not progress.stream_done:
        return False
    shown = {int(d["window_index"]) for _, d in run.feed.timed() if d["is_final"]}
    committed = {w.window_index for w in store.windows(run.session_id)}
    return committed <= shown or not run.feed.is_alive()


def _wait_until(cond: Callable[[], bool], timeout: float) -> None:
    """Poll ``cond`` until it holds or ``timeout`` s passed (then the figures say what is missing)."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass
class SessionResult:
    """One session of a level."""

    session_id: str
    words: int
    p50: float
    p95: float
    final_windows: int
    #: Worst (arrival of a final window) - (moment its last sample was spoken).
    finals_behind: float
    #: Last final's arrival after the audio ended (bench/captions.py's final lag).
    last_final_after_end: float


def session_result(run: SessionRun, windows: dict[int, float], finals: list[tuple[float, int]]) -> SessionResult:
    """Figures of one session: ``windows`` = window index -> end (s), ``finals`` = (arrival, window index).

    A window's final text may be sent again later (a new revision); it counts from its first arrival.
    """
    first: dict[int, float] = {}
    for at, w in finals:
        first[w] = min(at, first.get(w, at))
    behind = [at - (run.t0 + windows[w]) for w, at in first.items() if w in windows]
    return SessionResult(
        run.session_id,
        len(run.latencies),
        percentile(run.latencies, 50),
        percentile(run.latencies, 95),
        len(first),
        max(behind) if behind else float("inf"),
        (max(first.values()) - run.audio_end) if first else float("inf"),
    )


def worst(values: list[float]) -> float:
    """The largest value; a missing figure (NaN) or no values at all counts as infinitely bad."""
    if not values or any(math.isnan(v) for v in values):
        return float("inf")
    return max(values)


def verdict(results: list[SessionResult], *, interim: bool, p95_limit: float, lag_limit: float) -> list[str]:
    """Why a level does not hold (empty: it holds). NaN and inf never pass."""
    why = []
    if not results or any(r.final_windows == 0 for r in results):
        why.append("a session got no final")
    worst_p95 = worst([r.p95 for r in results])
    worst_behind = worst([r.finals_behind for r in results])
    if interim and not worst_p95 <= p95_limit:
        why.append(f"caption p95 {worst_p95:.2f} s > {p95_limit:g} s")
    if not worst_behind <= lag_limit:
        why.append(f"finals {worst_behind:.1f} s behind > {lag_limit:g} s")
    return why

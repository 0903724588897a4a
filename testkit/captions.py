"""Caption latency of sessions replayed into a live service, and when a level of sessions holds.

Shared by bench/captions.py and bench/gpu_capacity.py (and their tests): a
generated or real recording is replayed at 1x wall clock into new sessions of a
:class:`flowbot.serve.LiveService`, each session's feed is read as a viewer
would, and every final word is timed from its end in the audio to the first
feed event that showed it.

Two ways in (``Ingest``): ``stream`` writes frame records straight into the
service's embedded stream (``flowbot ingest --realtime``'s code path);
``rtmp`` publishes the file with ffmpeg (``-re``, AAC in FLV, as Zoom or OBS
push) to the session's ``rtmp_url``, through the service's RTMP relay, hub and
decoder, and ends the session through the API when ffmpeg is done, as a
presenter would. Over RTMP the audio clock starts when ffmpeg is started, so
the figures include ffmpeg's start and the RTMP handshake.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from contracts.frames import DEFAULT_FRAME_SAMPLES, SAMPLE_RATE
from contracts.segments import TranscriptSegment
from flowbot.wer import normalize
from testkit.service import end_session, start_session
from testkit.sse import FeedReader
from testkit.stats import percentile

if TYPE_CHECKING:
    from flowbot.serve import LiveService
    from processor.interim_timing import PassTiming
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
    #: Where ``replay(..., ingest="rtmp")`` publishes (``start_session``'s ``rtmp_url``).
    rtmp_url: str = ""


def _sightings(run: SessionRun) -> dict[str, list[tuple[float, float, bool]]]:
    """Word token -> (its end in the audio, feed arrival, final?) for every word the feed showed."""
    seen: dict[str, list[tuple[float, float, bool]]] = {}
    for at, data in run.feed.timed():
        for seg in data["segments"]:
            for w in seg["words"]:
                for token in normalize(w["text"]):
                    seen.setdefault(token, []).append((float(w["end"]), at, bool(data["is_final"])))
    return seen


def _first_sighting(
    seen: dict[str, list[tuple[float, float, bool]]], text: str, end: float
) -> tuple[float, bool] | None:
    """(arrival, final?) of the first feed event showing a word (same first token, end within 1 s)."""
    tokens = normalize(text)
    if not tokens:
        return None
    hits = [(at, final) for e, at, final in seen.get(tokens[0], []) if abs(e - end) <= 1.0]
    return min(hits) if hits else None


def first_seen(run: SessionRun, finals: Sequence[TranscriptSegment]) -> None:
    """Per final word: when it (same text, end within 1 s) first appeared in the feed."""
    seen = _sightings(run)
    for seg in finals:
        for w in seg.words:
            hit = _first_sighting(seen, w.text, w.end)
            if hit is not None:
                run.latencies.append(hit[0] - (run.t0 + w.end))


@dataclass(frozen=True)
class WordStages:
    """Where one final word's caption latency went (seconds; NaN where no interim pass had its audio).

    ``wait``: spoken -> the first interim pass whose audio reaches the word's end starts;
    of it, ``framing``: the word's end -> the end of its frame record (records of
    ``frame_samples`` on the session timeline), ``pipe``: the publisher, the stream and
    the engine, taken as that pass's snapshot's (offer - when its last sample was spoken),
    and ``behind``: the rest (the pass before it, the cadence, duty rests, skips for finals);
    ``decode``: that pass's model time; ``after``: that pass's end -> first shown (the
    store, the feed's poll, and passes that got the word wrong or left it out).
    """

    latency: float
    wait: float
    framing: float
    pipe: float
    behind: float
    decode: float
    after: float
    by_final: bool
    #: The word (text, its end on the session timeline in seconds, its window), for traces.
    text: str = ""
    end: float = math.nan
    window_index: int = -1


def word_stages(
    run: SessionRun,
    finals: Sequence[TranscriptSegment],
    passes: Sequence[PassTiming],
    frame_samples: int = DEFAULT_FRAME_SAMPLES,
) -> list[WordStages]:
    """The stage breakdown of every final word the feed showed, from the interim worker's pass timings."""
    seen = _sightings(run)
    out = []
    for seg in finals:
        mine = sorted((p for p in passes if p.window_index == seg.window_index), key=lambda p: p.started)
        for w in seg.words:
            hit = _first_sighting(seen, w.text, w.end)
            if hit is None:
                continue
            spoken = run.t0 + w.end
            first = next((p for p in mine if (p.start_sample + p.samples) / SAMPLE_RATE >= w.end), None)
            if first is None:
                nan = math.nan
                out.append(
                    WordStages(hit[0] - spoken, nan, nan, nan, nan, nan, nan, hit[1], w.text, w.end, seg.window_index)
                )
                continue
            framing = math.ceil(w.end * SAMPLE_RATE / frame_samples) * frame_samples / SAMPLE_RATE - w.end
            pipe = first.offered_at - (run.t0 + (first.start_sample + first.samples) / SAMPLE_RATE)
            wait = first.started - spoken
            out.append(
                WordStages(
                    hit[0] - spoken,
                    wait,
                    framing,
                    pipe,
                    wait - framing - pipe,
                    first.finished - first.started,
                    hit[0] - first.finished,
                    hit[1],
                    w.text,
                    w.end,
                    seg.window_index,
                )
            )
    return out


def open_sessions(svc: LiveService, n: int, timeout: float = 120.0) -> list[SessionRun]:
    """``n`` new sessions of ``svc``, each with its feed being read and connected.

    A feed counts as connected once its first event (the session's state, which the
    server sends every new viewer first) has arrived, so the audio never starts before
    its viewer is there; a loaded machine decides how long that takes, not a fixed pause.
    """
    runs = []
    for _ in range(n):
        started = start_session(svc.url, meeting_id="bench")
        sid = str(started["session_id"])
        feed = FeedReader(f"{svc.url}/sessions/{sid}/events")
        feed.start()
        runs.append(SessionRun(sid, feed, rtmp_url=str(started.get("rtmp_url", ""))))
    _wait_until(lambda: all(r.feed.events or not r.feed.is_alive() for r in runs), timeout)
    return runs


#: How a replay reaches the service: frame records into its stream, or ffmpeg over RTMP.
Ingest = Literal["stream", "rtmp"]


def ffmpeg_publish(wav: Path, url: str) -> subprocess.Popen[bytes]:
    """ffmpeg publishing ``wav`` at 1x (``-re``) to ``url`` as AAC 44.1 kHz in FLV, as a meeting client does."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed; run scripts/setup")
    args = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(wav)]
    return subprocess.Popen([*args, "-c:a", "aac", "-ar", "44100", "-f", "flv", url], stderr=subprocess.PIPE)


def replay(
    svc: LiveService,
    wav: Path,
    runs: Sequence[SessionRun],
    stagger: float,
    drain_timeout: float,
    ingest: Ingest = "stream",
) -> None:
    """Replay ``wav`` at 1x into every session at once (starts ``stagger`` s apart).

    Returns once every session is finished and its feed has shown all its finals
    (:func:`delivered`), or after ``drain_timeout`` s.
    """
    from producer.file_ingest import ingest_file

    def push(k: int, run: SessionRun) -> None:
        time.sleep(k * stagger)
        run.t0 = time.monotonic()
        if ingest == "stream":
            ingest_file(str(wav), svc.stream, run.session_id, realtime=True)
            run.audio_end = time.monotonic()
            return
        proc = ffmpeg_publish(wav, run.rtmp_url)
        _, err = proc.communicate(timeout=drain_timeout)
        run.audio_end = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg publish failed ({proc.returncode}): {err.decode(errors='replace')}")
        end_session(svc.url, run.session_id)  # the presenter ends the meeting: end of stream

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


def ingest_lags(run: SessionRun, passes: Sequence[PassTiming]) -> list[float]:
    """Per pass: its snapshot's offer - when the snapshot's last sample was spoken (publisher to engine)."""
    return [p.offered_at - (run.t0 + (p.start_sample + p.samples) / SAMPLE_RATE) for p in passes]


def first_final_lag(run: SessionRun) -> float:
    """Seconds from the end of the audio to the first arrival of the last window's final text.

    Windows sent again later (relabelled at the end of the meeting) count from their first arrival.
    """
    first: dict[int, float] = {}
    for at, d in run.feed.timed():
        if d["is_final"]:
            first.setdefault(int(d["window_index"]), at)
    return (max(first.values()) - run.audio_end) if first else float("inf")


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

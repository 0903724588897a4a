"""When interim passes run: in step with the session's records, and what each pass cost (for the bench).

:class:`processor.interim.InterimWorker` uses :func:`hold_for_next_offer` to
decide whether a due pass starts now or waits for the record about to arrive,
and keeps a :class:`PassTiming` per pass (``InterimWorker.timings``), from which
``bench/captions.py`` splits each word's caption latency into stages.
"""

from __future__ import annotations

from dataclasses import dataclass


def hold_for_next_offer(now: float, offered_at: float, offer_gap: float, max_hold: float) -> float:
    """Seconds a due pass should wait for the session's next record instead of taking a stale snapshot.

    Records arrive every ``offer_gap`` seconds (1 s frames); a pass that starts
    just before one arrives captions the words already there, and leaves that
    record's words for the next pass, a whole interval later. Waiting for it costs
    the snapshot's words at most ``max_hold`` and puts passes back in step with the
    records. 0 (run now) when the snapshot is fresh (within 15 % of a gap), when the
    next record is overdue, or when it is further off than ``max_hold``.
    """
    if offer_gap <= 0:
        return 0.0
    if now - offered_at <= 0.15 * offer_gap:
        return 0.0
    left = offered_at + offer_gap - now
    return left if 0 < left <= max_hold else 0.0


@dataclass(frozen=True)
class PassTiming:
    """When one interim pass ran (``clock`` seconds), for the caption benchmark's stage breakdown.

    ``offered_at``: the engine offered the snapshot (its last record was read);
    ``started``/``finished``: the model call; the snapshot covers window
    ``window_index`` from ``start_sample`` for ``samples`` samples.
    """

    session_id: str
    window_index: int
    start_sample: int
    samples: int
    offered_at: float
    started: float
    finished: float


#: Pass timings kept (about two hours of one session at a pass every 2 s).
PASS_TIMINGS_KEPT = 4096

"""When each interim pass ran, for the caption benchmark's stage breakdown.

:class:`processor.interim.InterimWorker` keeps a :class:`PassTiming` per pass
(``InterimWorker.timings``), from which ``bench/captions.py`` splits each word's
caption latency into stages (testkit.captions.word_stages).
"""

from __future__ import annotations

from dataclasses import dataclass


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

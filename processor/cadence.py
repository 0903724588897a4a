"""When a session's next interim pass is due: counted from the last pass's snapshot, in step with the records.

Snapshots arrive with the 1 s frame records. Counted from when the last pass
*started*, a pass every ``interval`` kept whatever phase against the records the
session's first pass (cold, slow), a duty rest or a final ASR had given it: in a
traced run every pass after the first started 0.7 s after its snapshot's record
arrived, on a snapshot 0.7 s old, while the next record came 0.3 s later
(docs/live-captions.md, round 29). Counted from the last pass's snapshot's
*offer*, the next pass is due on the first snapshot offered about ``interval``
later, so it starts as its record arrives. It never waits for a record the old
rule would not have waited for: a busy worker (a pass and its rest longer than
the interval) still takes the newest snapshot at once.

No pass starts that would still run when its window is cut (its length taken
as the last pass's, at most :data:`CUT_MARGIN_SECONDS`): the cut window's final
ASR and the next window's first pass would wait for it, and it holds little or
nothing of the cut window (cut at its last pause, usually before the last
pass's snapshot ended) that the final will not show a moment later.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.frames import DEFAULT_FRAME_SAMPLES, SAMPLE_RATE

#: A snapshot offered this much less than ``interval`` after the last pass's snapshot
#: still makes the next pass due (half a 1 s record: the records' arrival jitter).
RECORD_SLACK_SECONDS = 0.5


def next_pass_due(last_offered: float, pending_offered: float, interval: float) -> float:
    """When a pass of the pending snapshot may start (clock seconds; in the past: now).

    ``last_offered``: the offer time of the last pass's snapshot (``-inf`` before a
    window's first pass). Due at once when the pending snapshot is an interval newer
    (less the slack); otherwise once the record expected by then is late by the slack,
    on the snapshot there is.
    """
    slack = min(RECORD_SLACK_SECONDS, interval / 4)
    if pending_offered >= last_offered + interval - slack:
        return pending_offered
    return last_offered + interval + slack


#: The most a pass's length is taken to be when judging whether it would run into its window's cut.
CUT_MARGIN_SECONDS = 1.0
#: ... unless the cut is this late (records stopped coming): then the snapshot there is is run.
CUT_LATE_SECONDS = 2.0


@dataclass(frozen=True)
class Cadence:
    """A session's pass schedule: ``interval`` seconds apart, none running into a window's cut.

    ``limit_samples``: the engine's window limit (it cuts at the first record that takes
    the window over it); ``record_samples``: the frame record length.
    """

    interval: float
    limit_samples: int
    record_samples: int = DEFAULT_FRAME_SAMPLES

    def wait(self, last_offered: float, samples: int, offered_at: float, now: float, took: float) -> float:
        """Seconds until a pass of the pending snapshot may start (zero or less: now).

        ``samples``/``offered_at``: the snapshot; ``took``: the last pass's length, taken as
        this one's (at most :data:`CUT_MARGIN_SECONDS`). No pass starts that would still run
        when the record that cuts its window arrives.
        """
        if samples <= self.limit_samples:
            records = (self.limit_samples - samples) // self.record_samples + 1
            cut_at = offered_at + records * self.record_samples / SAMPLE_RATE
            if cut_at - min(took, CUT_MARGIN_SECONDS) <= now < cut_at + CUT_LATE_SECONDS:
                return cut_at + CUT_LATE_SECONDS - now  # the cut's offer (a new window) wakes the worker first
        return next_pass_due(last_offered, offered_at, self.interval) - now

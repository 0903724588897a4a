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
"""

from __future__ import annotations

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

"""A cut window's final ASR lets the next window's first interim pass run first.

At a cut, the words of the new window's first seconds (spoken between the pause
the window was cut at and the cut itself, up to ~4 s) have been in no interim
pass. Before round 28 the cut window's final ASR (beam 5, 2.4 s on a quiet box)
ran first and the new window's first pass after it, so those words were the
caption p95 (docs/live-captions.md, round 28). Now the interim worker registers
a new window's first pass when it is offered, and the final-ASR thread waits for
that one pass before it decodes: the new words show one greedy pass after the
cut, the cut window's final text about one pass later than before.

The final-ASR thread is the only waiter; the interim worker the only writer.
Only the newest window of each session is kept, so the registry stays one entry
per session.
"""

from __future__ import annotations

import threading
import time

#: How long the final-ASR thread waits for the next window's offer (it follows the
#: cut on the record thread within microseconds; none comes at a stream's end).
OFFER_WAIT_SECONDS = 0.5
#: Most a final ASR waits for a first pass (a pass is 0.7-1.3 s quiet, 2-6 s at load
#: 8-16): a safety bound, the model is shared, so it would wait for the pass anyway.
PASS_WAIT_SECONDS = 10.0


class FirstPasses:
    """Per session: the newest opened window, and whether its first interim pass is still to run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: session -> (window index, first pass pending)
        self._open: dict[str, tuple[int, bool]] = {}

    def opened(self, session_id: str, window_index: int, pass_due: bool) -> None:
        """The interim worker was first offered ``window_index``; ``pass_due``: its first pass will run."""
        with self._cond:
            self._open[session_id] = (window_index, pass_due)
            self._cond.notify_all()

    def done(self, session_id: str, window_index: int) -> None:
        """The first pass of ``window_index`` ran (or will not run: error, stop)."""
        with self._cond:
            if self._open.get(session_id, (-1, False))[0] == window_index:
                self._open[session_id] = (window_index, False)
            self._cond.notify_all()

    def release(self) -> None:
        """Nothing waits for any first pass any more (the interim worker stops)."""
        with self._cond:
            self._open = {sid: (window, False) for sid, (window, _) in self._open.items()}
            self._cond.notify_all()

    def wait(
        self,
        session_id: str,
        window_index: int,
        offer_wait: float = OFFER_WAIT_SECONDS,
        pass_wait: float = PASS_WAIT_SECONDS,
    ) -> bool:
        """Block until ``window_index``'s first pass is done or none is due; False when a bound ran out."""
        start = time.monotonic()
        with self._cond:
            while True:
                window, pending = self._open.get(session_id, (-1, False))
                if window > window_index or (window == window_index and not pending):
                    return True
                bound = offer_wait if window < window_index else pass_wait
                left = start + bound - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

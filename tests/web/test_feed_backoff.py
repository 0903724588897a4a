"""A watched but silent session costs close to nothing (issue 20 #8).

Before, every watched session's store was read 20 times a second whatever happened:
100 idle watched sessions took 25-33 % of a core (``bench/viewers.py --scenario idle``
measures it side by side). The pauses are checked here as a schedule, not as timings.
"""

from __future__ import annotations

import asyncio

from flowbot.web.feed import POLL_SECONDS, Cursor, PollSchedule, SessionFeed, _Read, sse_event
from stores.base import SessionState


def test_the_poll_stays_fast_while_a_session_changes_and_backs_off_when_it_is_silent() -> None:
    schedule = PollSchedule(base=0.05, idle_after=5.0, ceiling=1.0)
    assert schedule.next(False, 0.0) == 0.05  # the first read
    # Changes every second or two (live speech): always the fast poll.
    for t in (0.5, 1.7, 3.0, 4.9):
        assert schedule.next(True, t) == 0.05
    # Silent, but not yet for idle_after: still fast.
    assert schedule.next(False, 9.8) == 0.05
    # Silent for longer: the pause doubles up to the ceiling, and stays there.
    pauses = [schedule.next(False, 10.0 + i) for i in range(8)]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    # The first change brings the fast poll back.
    assert schedule.next(True, 30.0) == 0.05
    assert schedule.next(False, 30.1) == 0.05


def test_a_ceiling_below_the_base_never_slows_the_poll_down() -> None:
    schedule = PollSchedule(base=0.05, idle_after=0.0, ceiling=0.0)
    assert {schedule.next(False, float(t)) for t in range(10)} == {0.05}


def test_the_feed_sleeps_by_the_schedule_between_store_reads() -> None:
    """The feed's loop, with its store reads scripted and its sleeps recorded (no clock involved)."""
    feed = SessionFeed(ctx=None, session_id="s")  # type: ignore[arg-type]  # _read is scripted below
    feed.schedule = PollSchedule(base=POLL_SECONDS, idle_after=0.0, ceiling=1.0)
    window = (0, 7, sse_event("window", {"window_index": 0}, 7))
    script = [[], [], [], [], [], [], [window], [], []]  # silence, one change, silence
    pauses: list[float] = []

    def read(since: int, known_state: SessionState | None) -> _Read:
        return _Read({"state": "live"}, SessionState.LIVE, script.pop(0) if script else [], {}, None)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if not script:
            feed.close()

    async def run() -> None:
        feed._read = read  # type: ignore[method-assign]
        feed._sleep = sleep
        feed.cursors.add(Cursor())
        feed.start()
        assert feed._task is not None
        await asyncio.wait_for(asyncio.gather(feed._task, return_exceptions=True), 10)

    asyncio.run(run())
    base = POLL_SECONDS
    assert pauses == [base, base * 2, base * 4, base * 8, base * 16, 1.0, base, base * 2, base * 4], pauses

"""Viewers show interim text distinctly and replace it in place: the SSE feed and `flowbot follow`."""

from __future__ import annotations

import io
import threading
from typing import Any

from contracts.segments import TranscriptSegment, WindowRecord, Word
from flowbot.follow import follow_local
from stores.base import SessionProgress, SessionState
from testkit.net import wait_for
from testkit.service import start_session
from testkit.sse import FeedReader


def seg(sid: str, win: int, text: str, final: bool, start: float = 0.0) -> TranscriptSegment:
    words = tuple(Word(start + i * 0.3, start + (i + 1) * 0.3, " " + w) for i, w in enumerate(text.split()))
    return TranscriptSegment(sid, win, 0, start, start + len(words) * 0.3, text, "S1", words, is_final=final)


def test_feed_and_follow_show_interim_then_replace_it_in_place(live_service: Any) -> None:
    sid = start_session(live_service.url)["session_id"]
    store = live_service.ctx.transcripts
    feed = FeedReader(f"{live_service.url}/sessions/{sid}/events")
    feed.start()
    out = io.StringIO()
    result: list[str | None] = []
    follower = threading.Thread(target=lambda: result.append(follow_local(live_service.url, sid, out)))
    follower.start()
    # Both viewers are connected once they got the session's state (the feed sends it first);
    # a viewer that connects later sees only each window's latest state, by design.
    wait_for(lambda: any(ev == "state" for _, ev, _d in list(feed.events)) and "starting" in out.getvalue(), 30)
    assert store.put_interim(sid, 0, [seg(sid, 0, "hello wor", False)])
    wait_for(lambda: len(feed.windows()) == 1)
    assert store.put_interim(sid, 0, [seg(sid, 0, "hello world and", False)])
    wait_for(lambda: len(feed.windows()) == 2)
    store.commit_window(
        WindowRecord(sid, 0, 0, 48000), [seg(sid, 0, "hello world and more", True)], SessionProgress(sid, 1, 48000)
    )
    wait_for(lambda: len(feed.windows()) == 3)
    assert not store.put_interim(sid, 0, [seg(sid, 0, "late pass", False)])
    assert store.put_interim(sid, 1, [seg(sid, 1, "next window", False, 3.0)])
    wait_for(lambda: len(feed.windows()) == 4)
    live_service.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
    follower.join(30)
    assert result == ["completed"]
    events = [(d["window_index"], d["is_final"], [s["text"] for s in d["segments"]]) for d in feed.windows()]
    assert events == [
        (0, False, ["hello wor"]),
        (0, False, ["hello world and"]),
        (0, True, ["hello world and more"]),
        (1, False, ["next window"]),
    ]
    lines = out.getvalue().splitlines()
    assert any("hello wor (interim)" in x for x in lines)
    finals = [x for x in lines if "hello world and more" in x]
    assert len(finals) == 1 and "(interim)" not in finals[0], lines
    assert not any("late pass" in x for x in lines)

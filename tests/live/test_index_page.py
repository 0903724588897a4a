"""The index page in headless Chromium: your meetings, and search leading to playback of the moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowbot.serve import LiveService
from stores.base import SessionState
from testkit.service import start_session
from tests.live.cdp import Page, close, devtools_page, launch
from tests.live.test_session_page import commit, png_size, seg

PHONE = (390, 844)
MEETINGS = (
    "[...document.querySelectorAll('#meetings tbody tr.meeting')].map(tr => [...tr.children].map(td => td.textContent))"
)


@pytest.mark.slow
def test_index_lists_meetings_and_a_search_hit_plays_its_moment(
    quiet_service: LiveService, tmp_path: Path, artifacts: Path
) -> None:
    svc = quiet_service
    first = start_session(svc.url)["session_id"]
    second = start_session(svc.url)["session_id"]
    commit(svc, first, 0, [seg(first, 0, 0, 1.0, "welcome to the kickoff", "S1")])
    # The budget line is in the second window (10 s in), 2.5 s after that window's start.
    commit(svc, first, 1, [seg(first, 1, 0, 12.5, "the marketing budget doubles next quarter", "S2")], audio=True)
    commit(svc, second, 0, [seg(second, 0, 0, 0.5, "nothing about money here", "S1")])
    svc.ctx.transcripts.rename_speaker(first, "S2", "Priya")
    svc.ctx.sessions.transition(first, [SessionState.STARTING], SessionState.COMPLETED)

    profile = tmp_path / "profile"
    profile.mkdir()
    browser = launch(profile)
    try:
        asyncio.run(_reader(svc, first, second, devtools_page(profile), artifacts))
    finally:
        close(browser)


async def _reader(svc: LiveService, first: str, second: str, ws_url: str, artifacts: Path) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=1 << 26) as ws:
        page = Page(ws)
        await page.viewport(*PHONE, mobile=True)
        await page.goto(f"{svc.url}/")
        # Newest first; topic, length, state and speakers' names; each row links to its page.
        rows = await page.until(f"{MEETINGS}.length === 2 && {MEETINGS}")
        assert [r[3] for r in rows] == ["starting", "completed"]
        assert rows[1][2] == "0:20" and rows[1][4] == "S1, Priya"
        links = await page.js("[...document.querySelectorAll('#meetings tbody a')].map(a => a.pathname)")
        assert links == [f"/sessions/{second}", f"/sessions/{first}"]
        assert await page.js("document.documentElement.scrollWidth <= window.innerWidth")

        await page.js(
            "(() => { const f = document.getElementById('search'); f.query.value = 'budgets'; f.requestSubmit(); })()"
        )
        hits = await page.until(
            "[...document.querySelectorAll('#hitlist li.hit')].map(li => [li.innerText, "
            "[...li.querySelectorAll('mark')].map(m => m.textContent), li.querySelector('a').getAttribute('href')])"
        )
        assert len(hits) == 1, hits
        text, marks, href = hits[0]
        assert "Priya:" in text and "0:12" in text and marks == ["budget"]
        assert href == f"/sessions/{first}?t=12.50"
        shot = await page.screenshot(artifacts / "index-phone-search.png")
        assert png_size(shot) == PHONE

        # Following the hit opens the session at that moment and plays it from the archive.
        await page.js("document.querySelector('#hitlist li.hit a').click()")
        moment = await page.until(
            "document.querySelector('#transcript .turn.moment') && "
            "document.querySelector('#transcript .turn.moment').textContent"
        )
        assert "the marketing budget doubles next quarter" in moment and "kickoff" not in moment
        src = await page.until("document.getElementById('player').currentSrc")
        assert src.endswith(f"/sessions/{first}/audio/1")
        at = await page.until(
            "document.getElementById('player').currentTime >= 2.4 && document.getElementById('player').currentTime"
        )
        assert 2.4 <= at < 5.0
        await page.screenshot(artifacts / "session-phone-moment.png")

"""A speaker named by voice on the session page, in headless Chromium (issue 21 item 3).

The owner's page shows, next to a speaker the processor named by a remembered
voice while the page was open, "named by voice" with the score and an undo;
clicking undo gives the speaker its label back everywhere on the page and in
the store. A viewer's page (the read-only view link) shows the name, never the
score nor an undo. The naming is done by the same code the processor runs after
a committed window (:meth:`stores.voice_naming.Voices.name_session`); no model runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.voices import NamingState
from flowbot.serve import LiveService
from testkit.service import live_service, live_settings
from tests.live.cdp import Page, close, devtools_page, launch
from tests.test_web_front import TOKEN
from tests.web.test_voice_namings_view import named_meeting

WHO = "[...document.querySelectorAll('#transcript .who')].map(w => w.textContent)"
S1 = "document.querySelector('#speakers li[data-label=\"S1\"]')"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LiveService]:
    """flowbot serve with an API token (so the owner and a view link are different people)."""
    with live_service(live_settings(tmp_path / "data", interim_seconds=0.0, api_token=TOKEN)) as service:
        yield service


@pytest.mark.slow
def test_the_owner_sees_named_by_voice_with_the_score_and_undoes_it(
    svc: LiveService, tmp_path: Path, artifacts: Path
) -> None:
    sid, _ = named_meeting(svc, "owner-1", name=False)
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = launch(profile)
    try:
        asyncio.run(_owner_then_viewer(svc, sid, devtools_page(profile), artifacts))
    finally:
        close(browser)


async def _owner_then_viewer(svc: LiveService, sid: str, ws_url: str, artifacts: Path) -> None:
    import websockets

    voices = svc.ctx.voices
    assert voices is not None
    async with websockets.connect(ws_url, max_size=1 << 26) as ws:
        page = Page(ws)
        await page.viewport(390, 844, mobile=True)
        await page.goto(f"{svc.url}/sessions/{sid}?token={TOKEN}")
        await page.until("document.querySelectorAll('#transcript .who').length === 2")
        assert await page.js(WHO) == ["S1:", "S2:"]
        assert await page.js(f"{S1}.querySelector('.voice')") is None

        # The processor names S1 by Dana's remembered voice while the page is open.
        named = await asyncio.to_thread(voices.name_session, svc.ctx.sessions.get(sid))
        score = named[0].score
        await page.until(f"{WHO}[0] === 'Dana:'")
        label = await page.until(f"{S1}.querySelector('.voice') && {S1}.querySelector('.voice').textContent")
        assert label == f"named by voice, {score:.2f}"
        assert await page.js(f"{S1}.querySelector('.name').textContent") == "Dana"
        assert await page.js("document.querySelectorAll('#speakers .voice').length") == 1  # S2 was not
        assert await page.js("document.documentElement.scrollWidth <= window.innerWidth")
        await page.screenshot(artifacts / "session-named-by-voice.png")

        # Undo: the label comes back in the list and the transcript, and the store has it undone.
        await page.js(f"{S1}.querySelector('button.undo').click()")
        await page.until(f"{WHO}[0] === 'S1:'")
        await page.until(f"{S1}.querySelector('.name').textContent === 'S1' && !{S1}.querySelector('.voice')")
        assert await page.js(f"{S1}.querySelector('button.undo')") is None
        assert svc.ctx.transcripts.speakers(sid)["S1"] == "S1"
        assert voices.library.namings(sid)["S1"].state == NamingState.UNDONE
        # Undone stays undone: the next committed window's naming pass leaves S1 alone.
        assert await asyncio.to_thread(voices.name_session, svc.ctx.sessions.get(sid)) == []

        # A viewer of a meeting named by voice sees the name, not that a voice gave it.
        other, _ = named_meeting(svc, "owner-2")
        view = svc.web.guard.view_token(other)
        await page.goto(f"{svc.url}/sessions/{other}?view={view}")
        await page.until(f"{WHO}[0] === 'Dana:'")
        await page.until(f"{S1} && {S1}.querySelector('.name').textContent === 'Dana'")
        await asyncio.sleep(0.5)  # what an owner's page would have asked for by now
        assert await page.js("document.querySelectorAll('#speakers .voice, #speakers button').length") == 0
        assert "by voice" not in await page.js("document.body.innerText")

"""The session page in headless Chromium, tried as a participant would (issue 14).

The transcript is written into the store directly (no model runs); the page
gets it through the real web front. Interactions are asserted through the DOM;
screenshots are kept under the pytest temporary folder's ``artifacts/`` (or
``$FLOWBOT_TEST_ARTIFACTS``) for a human to look at.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import TranscriptSegment, WindowRecord, Word
from flowbot.serve import LiveService
from stores.archive import LocalArchive
from stores.base import SessionProgress, SessionState
from testkit.service import start_session
from tests.live.cdp import Page, close, devtools_page, launch

PHONE = (390, 844)


def seg(sid: str, win: int, idx: int, start: float, text: str, speaker: str, final: bool = True) -> TranscriptSegment:
    words = tuple(Word(start + i * 0.3, start + (i + 1) * 0.3, " " + w) for i, w in enumerate(text.split()))
    return TranscriptSegment(sid, win, idx, start, start + len(words) * 0.3, text, speaker, words, is_final=final)


def commit(svc: LiveService, sid: str, win: int, segments: list[TranscriptSegment], audio: bool = False) -> None:
    start, end = win * 160000, (win + 1) * 160000
    uri = None
    if audio:
        tone = (np.sin(np.arange(end - start) * 2 * np.pi * 440 / 16000) * 8000).astype(np.int16)
        uri = LocalArchive(svc.settings.data_dir / "archive").put(sid, win, tone)
    svc.ctx.transcripts.commit_window(
        WindowRecord(sid, win, start, end, audio_uri=uri), segments, SessionProgress(sid, win + 1, end)
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


ROWS = (
    "[...document.querySelectorAll('#transcript .seg')].map(s => "
    "[s.dataset.window, s.className, s.closest('.turn').querySelector('.who').textContent, s.textContent])"
)
AT_BOTTOM = "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 5"


@pytest.mark.slow
def test_session_page_as_a_participant_sees_it(quiet_service: LiveService, tmp_path: Path, artifacts: Path) -> None:
    svc = quiet_service
    body = json.dumps(
        {"action": "start_session", "meeting_id": "q3-plan", "user_id": "u", "topic": "Quarterly planning"}
    )
    import urllib.request

    req = urllib.request.Request(f"{svc.url}/api", body.encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        started = json.loads(resp.read())
    sid = started["session_id"]
    commit(
        svc,
        sid,
        0,
        [seg(sid, 0, 0, 0.5, "good morning everyone", "S1"), seg(sid, 0, 1, 3.0, "morning how are you", "S2")],
        audio=True,
    )
    # The open window's interim text (no diarization yet) continues the current turn (issue 23).
    svc.ctx.transcripts.put_interim(sid, 1, [seg(sid, 1, 0, 10.5, "and the budget is", "S2", final=False)])

    profile = tmp_path / "profile"
    profile.mkdir()
    browser = launch(profile)
    try:
        asyncio.run(_participant(svc, sid, started["stream_key"], devtools_page(profile), artifacts))
    finally:
        close(browser)


async def _participant(svc: LiveService, sid: str, key: str, ws_url: str, artifacts: Path) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=1 << 26) as ws:
        page = Page(ws)
        await page.viewport(*PHONE, mobile=True)
        await page.goto(f"{svc.url}/sessions/{sid}")

        # Topic, state, speakers, transcript, downloads; no presenter controls without the key.
        await page.until("document.querySelectorAll('#transcript .seg').length === 3")
        assert await page.js("document.getElementById('topic').textContent") == "Quarterly planning"
        assert "starting" in await page.js("document.getElementById('state').textContent")
        assert await page.js("document.getElementById('presenter').hidden") is True
        assert await page.js("document.getElementById('mic') === null")
        rows = await page.js(ROWS)
        assert [r[2] for r in rows] == ["S1:", "S2:", "S2:"], rows
        assert "interim" in rows[2][1] and "final" in rows[0][1]
        speakers = await page.js("[...document.querySelectorAll('#speakers li')].map(li => li.dataset.label)")
        assert speakers == ["S1", "S2"]
        links = await page.js("[...document.querySelectorAll('#exports a')].map(a => [a.dataset.format, a.href])")
        assert sorted(f for f, _ in links) == ["json", "rttm", "srt", "text", "vtt"]
        fetched = await page.js(
            "Promise.all([...document.querySelectorAll('#exports a')].map(async a => { const r = await fetch(a.href); "
            "return [r.status, r.headers.get('content-disposition') || '', await r.text()]; }))"
        )
        assert all(s == 200 and "attachment" in d for s, d, _ in fetched), fetched
        by_format = {f: body for (f, _), (_, _, body) in zip(links, fetched, strict=True)}
        assert "good morning everyone" in by_format["text"] and "-->" in by_format["srt"]
        # Usable on a phone: nothing wider than the screen.
        assert await page.js("document.documentElement.scrollWidth <= window.innerWidth")
        shot = await page.screenshot(artifacts / "session-phone-live.png")
        assert png_size(shot) == PHONE

        # The owner renames S1 in place; every row and the speaker list follow, and the store has it.
        await page.js("document.querySelector('#speakers li[data-label=\"S1\"] button.rename').click()")
        await page.js(
            "(() => { const i = document.querySelector('#speakers li input'); i.value = 'Dana'; "
            "document.querySelector('#speakers li button.save').click(); })()"
        )
        await page.until("[...document.querySelectorAll('#transcript .who')].some(w => w.textContent === 'Dana:')")
        assert await page.js("document.querySelector('#speakers li[data-label=\"S1\"] .name').textContent") == "Dana"
        assert svc.ctx.transcripts.speakers(sid)["S1"] == "Dana"

        # Clicking a final segment plays that passage of the window's archived audio.
        await page.js('document.querySelector(\'#transcript .seg.final[data-window="0"][data-segment="1"]\').click()')
        src = await page.until("document.getElementById('player').currentSrc")
        assert src.endswith(f"/sessions/{sid}/audio/0")
        await page.until(
            "document.getElementById('player').readyState >= 1 && !document.getElementById('player').error"
        )
        # The second segment starts 3.0 s into window 0.
        at = await page.until(
            "document.getElementById('player').currentTime >= 2.9 && document.getElementById('player').currentTime"
        )
        assert 2.9 <= at < 5.0
        assert await page.js("document.querySelector('#transcript .seg.playing') !== null")

        # Auto-scroll follows the live edge...
        for win in range(2, 30):
            commit(svc, sid, win, [seg(sid, win, 0, win * 10.0, f"window {win} " + "words " * 30, "S2")])
        await page.until("document.querySelectorAll('#transcript .seg.final').length >= 30")
        await page.until(AT_BOTTOM)
        assert await page.js("document.getElementById('jump').hidden") is True
        # ...until the reader scrolls up: then new text does not move the page; "jump to live" appears.
        await page.js("window.scrollTo(0, 0)")
        await asyncio.sleep(0.3)
        commit(svc, sid, 30, [seg(sid, 30, 0, 300.0, "the newest words", "S1")])
        await page.until("document.getElementById('jump').hidden === false")
        assert await page.js("window.scrollY") == 0
        await page.screenshot(artifacts / "session-phone-scrolled-up.png")
        await page.js("document.getElementById('jump').click()")
        await page.until(AT_BOTTOM)
        assert await page.js("document.getElementById('jump').hidden") is True

        # Done: notes at the top, whatever their shape (strings or objects with owners and times); keys
        # outside the notes contract are not shown (tests/live/test_session_turns.py checks the layout).
        notes = {
            "summary": ["Budget agreed for Q3."],
            "decisions": [{"text": "Ship the beta in July", "start": 61.0}, "Hire two engineers"],
            "action_items": [{"owner": "S1", "text": "send the budget sheet", "start": 75.5}, {"text": "book a room"}],
            "talk_time": {"S1": 40.0, "S2": 80.0},
            "open_questions": [{"text": "Who owns QA?"}],
        }
        svc.ctx.transcripts.put_notes(sid, notes)
        svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
        await page.until("document.getElementById('notes').hidden === false")
        assert "completed" in await page.js("document.getElementById('state').textContent")
        text = await page.js("document.getElementById('notes').innerText")
        for expected in (
            "Ship the beta in July 1:01",
            "Hire two engineers",
            "Dana send the budget sheet 1:15",
            "Unassigned book a room",
            "S2: 1 min 20 s (67%)",
            "Dana: 40 s (33%)",
        ):
            assert expected in text, (expected, text)
        assert "Who owns QA?" not in text
        above = await page.js(
            "document.getElementById('notes').compareDocumentPosition(document.getElementById('transcript'))"
            " & Node.DOCUMENT_POSITION_FOLLOWING"
        )
        assert above, "notes come before the transcript"
        await page.js("window.scrollTo(0, 0)")
        assert await page.js("document.getElementById('notes').getBoundingClientRect().top < window.innerHeight")
        assert await page.js("document.documentElement.scrollWidth <= window.innerWidth")
        await page.screenshot(artifacts / "session-phone-done.png")

        # The presenter's page (opened with the key in the fragment) has the microphone controls.
        other = start_session(svc.url)
        await page.viewport(1280, 900, mobile=False)
        await page.goto(f"{svc.url}/sessions/{other['session_id']}#key={other['stream_key']}")
        await page.until("document.getElementById('presenter').hidden === false")
        assert await page.js("document.getElementById('streamkey').value") == other["stream_key"]
        assert await page.js("document.getElementById('mic').textContent") == "stream my microphone"
        await page.screenshot(artifacts / "session-desktop-presenter.png")
    assert all((artifacts / n).stat().st_size > 1000 for n in ("session-phone-live.png", "session-phone-done.png"))

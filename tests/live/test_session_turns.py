"""The session page as people read it, in headless Chromium (issue 23 items 1, 2 and 6).

- Turns: Whisper's segments of one speaker, across window joins, are one paragraph;
  interim text continues the current turn; the text export has the same turns.
- Notes: summary, decisions, action items with their owner and a link to the moment,
  talk time; the notes contract's machine fields (generator, fallback reason, version,
  usage, speakers map, duration) are not shown. Empty sections say none were found.
- A link to a moment (``?t=SECONDS``) marks that turn and plays it from the archive.

The transcript is written into the store directly (no model runs); the page gets it
through the real web front. Screenshots go to the artifacts folder of test_session_page.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from contracts.notes import ActionItem, MeetingNotes, Usage
from contracts.segments import TranscriptSegment
from flowbot.serve import LiveService
from stores.base import SessionState
from tests.live.cdp import Page, close, devtools_page, launch
from tests.live.test_session_page import PHONE, commit, seg

pytestmark = pytest.mark.slow

TURNS = (
    "[...document.querySelectorAll('#transcript .turn')].map(p => [p.querySelector('.who').textContent, "
    "[...p.querySelectorAll('.seg')].map(s => [s.dataset.window, s.className, s.textContent])])"
)
NOTES_PARTS = "[...document.querySelectorAll('#notes section.notes-part')].map(s => s.dataset.part)"


def start(svc: LiveService, topic: str) -> str:
    body = json.dumps({"action": "start_session", "meeting_id": "m", "user_id": "u", "topic": topic}).encode()
    req = urllib.request.Request(f"{svc.url}/api", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["session_id"])


def fetch_text(svc: LiveService, sid: str) -> str:
    with urllib.request.urlopen(f"{svc.url}/sessions/{sid}/transcript?format=text", timeout=30) as resp:
        return resp.read().decode()


def kennedy(sid: str) -> list[list[TranscriptSegment]]:
    """Three windows: one sentence of S3 split by Whisper over three segments and a window join."""
    return [
        [
            seg(sid, 0, 0, 1.0, "and so my fellow", "S3"),
            seg(sid, 0, 1, 3.0, "Americans ask not what your country can do for you", "S3"),
        ],
        [
            seg(sid, 1, 0, 10.2, "ask what you can do for your country.", "S3"),
            seg(sid, 1, 1, 14.0, "Thank you, that was the speech.", "S1"),
        ],
        [seg(sid, 2, 0, 20.5, "I will send the recording to everyone.", "S1")],
    ]


def test_turns_merged_on_the_page_and_in_the_text_export(quiet_service: LiveService, tmp_path: Path) -> None:
    svc = quiet_service
    sid = start(svc, "Turns")
    windows = kennedy(sid)
    for win, segments in enumerate(windows[:2]):
        commit(svc, sid, win, segments, audio=True)
    # The open window's interim text, before diarization: it continues S1's turn.
    svc.ctx.transcripts.put_interim(sid, 2, [seg(sid, 2, 0, 20.5, "I will send the", "S1", final=False)])

    profile = tmp_path / "profile"
    profile.mkdir()
    browser = launch(profile)
    try:
        asyncio.run(_turns(svc, sid, windows, devtools_page(profile)))
    finally:
        close(browser)
    # The text export: one line per speaker turn.
    lines = fetch_text(svc, sid).splitlines()
    assert lines == [
        "[00:00:01] John: and so my fellow Americans ask not what your country can do for you "
        "ask what you can do for your country.",
        "[00:00:14] S1: Thank you, that was the speech. I will send the recording to everyone.",
        "[00:00:30] S2: Over to you.",
    ], lines


async def _turns(svc: LiveService, sid: str, windows: list[list[TranscriptSegment]], ws_url: str) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=1 << 26) as ws:
        page = Page(ws)
        await page.viewport(*PHONE, mobile=True)
        await page.goto(f"{svc.url}/sessions/{sid}")
        await page.until("document.querySelectorAll('#transcript .seg').length === 5")
        turns = await page.js(TURNS)
        assert [t[0] for t in turns] == ["S3:", "S1:"], turns
        # S3's three segments, over the window join, are one paragraph in order.
        assert [(s[0], s[2]) for s in turns[0][1]] == [
            ("0", "and so my fellow"),
            ("0", "Americans ask not what your country can do for you"),
            ("1", "ask what you can do for your country."),
        ]
        # Interim text continues the current (S1) turn, marked as interim; nothing claims a new speaker.
        assert [(s[0], "interim" in s[1]) for s in turns[1][1]] == [("1", False), ("2", True)]
        assert await page.js("document.querySelectorAll('#transcript .who.pending').length") == 0

        # The window closes: its final text replaces the interim text in the same turn.
        commit(svc, sid, 2, windows[2], audio=True)
        await page.until("document.querySelectorAll('#transcript .seg.interim').length === 0")
        turns = await page.js(TURNS)
        assert [t[0] for t in turns] == ["S3:", "S1:"]
        assert [s[2] for s in turns[1][1]] == [
            "Thank you, that was the speech.",
            "I will send the recording to everyone.",
        ]

        # Another speaker's final text starts a new turn.
        commit(svc, sid, 3, [seg(sid, 3, 0, 30.0, "Over to you.", "S2")])
        await page.until("document.querySelectorAll('#transcript .turn').length === 3")
        assert (await page.js(TURNS))[2][0] == "S2:"

        # A rename applies to whole turns.
        await asyncio.to_thread(svc.ctx.transcripts.rename_speaker, sid, "S3", "John")
        await page.until("document.querySelector('#transcript .turn .who').textContent === 'John:'")
        assert await page.js("document.documentElement.scrollWidth <= window.innerWidth")


def test_notes_layout_and_links_to_the_moment(
    quiet_service: LiveService,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    svc = quiet_service
    sid = start(svc, "Notes")
    windows = kennedy(sid)
    for win, segments in enumerate(windows):
        commit(svc, sid, win, segments, audio=True)
    notes = MeetingNotes(
        summary=["Kennedy's inaugural address was played.", "The recording will be shared."],
        decisions=[],
        action_items=[ActionItem("Ann", "I will send the recording to everyone.", 20.5)],
        talk_time={"John": 9.0, "Ann": 5.5},
        duration=28.0,
        generator="offline-extractive-v1",
        fallback_reason="llama-cpp:qwen2.5-coder-0.5b-instruct: invalid reply: reply was cut off",
        speakers={"S1": "Ann", "S3": "John"},
        usage=Usage(calls=1, input_tokens=812, output_tokens=1024, seconds=41.0),
    )
    svc.ctx.transcripts.rename_speaker(sid, "S1", "Ann")
    svc.ctx.transcripts.rename_speaker(sid, "S3", "John")
    svc.ctx.transcripts.put_notes(sid, notes.to_dict())
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)

    profile = tmp_path / "profile"
    profile.mkdir()
    browser = launch(profile)
    try:
        asyncio.run(_notes(svc, sid, devtools_page(profile), artifacts))
    finally:
        close(browser)


async def _notes(svc: LiveService, sid: str, ws_url: str, artifacts: Path) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=1 << 26) as ws:
        page = Page(ws)
        await page.viewport(1280, 900, mobile=False)
        await page.goto(f"{svc.url}/sessions/{sid}")
        await page.until("document.getElementById('notes').hidden === false")
        assert await page.js(NOTES_PARTS) == ["summary", "decisions", "action_items", "talk_time"]
        text = await page.js("document.getElementById('notes').innerText")
        for expected in (
            "Kennedy's inaugural address was played.",
            "Ann I will send the recording to everyone. 0:20",
            "John: 9 s (62%)",
            "Ann: 6 s (38%)",
        ):
            assert expected in text, (expected, text)
        assert await page.js("document.querySelector('#notes [data-part=decisions] .none').textContent") == (
            "None found."
        )
        # Machine fields are in the JSON download, not in the notes box.
        for machine in ("offline-extractive", "fallback", "llama-cpp", "version", "usage", "812", "duration", "{"):
            assert machine not in text, (machine, text)
        # Talk time, largest first.
        assert await page.js("[...document.querySelectorAll('#notes [data-part=talk_time] meter')].length") == 2

        # The action item links to its moment on this page: the turn is marked and plays from there.
        href = await page.js("document.querySelector('#notes [data-part=action_items] a.at').getAttribute('href')")
        assert href == f"/sessions/{sid}?t=20.5"
        await page.js("document.querySelector('#notes [data-part=action_items] a.at').click()")
        await page.until("document.querySelector('#transcript .turn.moment') !== null")
        moment = await page.js("document.querySelector('#transcript .turn.moment .who').textContent")
        assert moment == "Ann:"
        src = await page.until("document.getElementById('player').currentSrc")
        assert src.endswith(f"/sessions/{sid}/audio/2")
        # 20.5 s on the session timeline is 0.5 s into window 2 (which starts at 20 s).
        at = await page.until(
            "!document.getElementById('player').paused && document.getElementById('player').currentTime"
        )
        assert 0.4 <= at < 3.0, at
        await page.screenshot(artifacts / "session-desktop-notes.png")

        # Opened from elsewhere (a search hit, a shared link): the same moment from the URL.
        await page.goto(f"{svc.url}/sessions/{sid}?t=4")
        await page.until("document.querySelector('#transcript .turn.moment') !== null")
        assert await page.js("document.querySelector('#transcript .turn.moment .who').textContent") == "John:"
        src = await page.until("document.getElementById('player').currentSrc")
        assert src.endswith(f"/sessions/{sid}/audio/0")
        # From 4 s, inside "Americans ask not ..." (3.0-6.0 s), to the end of that passage.
        at = await page.until(
            "document.getElementById('player').readyState >= 1 && document.getElementById('player').currentTime"
        )
        assert 4.0 <= at <= 6.5, at

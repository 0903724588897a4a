"""The session page's "stream my microphone" button in real headless Chromium, end to end.

Chromium's fake microphone plays a generated meeting; the page takes the stream
key from the URL fragment, publishes over WHIP, and the captions come back on
the same page over the SSE feed: interim first (class "interim"), replaced in
place by the final text of the window. The page is read through the DevTools
protocol on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testkit.service import start_session
from testkit.speech import Turn
from testkit.sse import FeedReader
from tests.live.conftest import require

DOM = """JSON.stringify({
  status: (document.getElementById('micstatus') || {}).textContent || '',
  rows: [...document.querySelectorAll('#transcript .seg')]
    .map(s => [s.dataset.window, s.className, s.textContent])
})"""


def chromium_args(exe: str, wav: Path, profile: Path, url: str) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # WebRTC on loopback only: offer 127.0.0.1 candidates, plain addresses instead of mDNS names.
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        url,
    ]


def devtools_page(profile: Path, timeout: float = 30.0) -> str:
    """WebSocket URL of the page target (Chromium writes its port into the profile)."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                pages = [t for t in json.loads(resp.read()) if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.2)
    raise AssertionError("Chromium did not expose its DevTools port")


async def watch_page(ws_url: str, done: Any, seconds: float) -> list[dict[str, Any]]:
    """Snapshots of the page's transcript and mic status until ``done()`` or timeout."""
    import websockets

    snaps: list[dict[str, Any]] = []
    async with websockets.connect(ws_url, max_size=1 << 24) as ws:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await ws.send(json.dumps({"id": n, "method": "Runtime.evaluate", "params": {"expression": DOM}}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == n:
                    break
            value = msg.get("result", {}).get("result", {}).get("value")
            if value:
                snaps.append(json.loads(value))
            if done(snaps):
                break
            await asyncio.sleep(0.25)
    return snaps


@pytest.mark.slow
def test_browser_microphone_streams_and_captions_appear(
    live_service: Any, meeting: tuple[Path, list[Turn]], tmp_path: Path
) -> None:
    wav, _turns = meeting
    exe = require("chromium")
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    feed = FeedReader(f"{live_service.url}/sessions/{sid}/events")
    feed.start()
    seen_requests: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen_requests.append(record.getMessage())

    serve_log = logging.getLogger("flowbot.serve")
    handler, old_level = Capture(), serve_log.level
    serve_log.addHandler(handler)
    serve_log.setLevel(logging.DEBUG)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    url = f"{live_service.url}/sessions/{sid}?autostart=1#key={key}"
    browser = subprocess.Popen(
        chromium_args(exe, wav, profile, url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ws_url = devtools_page(profile)

        def finished(snaps: list[dict[str, Any]]) -> bool:
            rows = snaps[-1]["rows"] if snaps else []
            finals = {r[0] for r in rows if "interim" not in r[1]}
            return len(finals) >= 2 and any("interim" in r[1] for r in rows)

        snaps = asyncio.run(watch_page(ws_url, finished, 90.0))
    finally:
        browser.terminate()
        try:
            browser.wait(15)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(5)
        serve_log.removeHandler(handler)
        serve_log.setLevel(old_level)
    assert snaps, "the page never answered over DevTools"
    statuses = [s["status"] for s in snaps]
    assert "connected" in statuses, statuses[-5:]
    stats = live_service.hub.stats(sid)
    assert stats.publishes == 1 and stats.samples > 10 * 16000
    # The page showed interim text for window 0 before its final text, and the final replaced it.
    w0 = [[r for r in s["rows"] if r[0] == "0"] for s in snaps]
    first_interim = next(i for i, rows in enumerate(w0) if rows and all("interim" in r[1] for r in rows))
    first_final = next(i for i, rows in enumerate(w0) if rows and all("interim" not in r[1] for r in rows))
    assert first_interim < first_final
    assert all(all("interim" not in r[1] for r in rows) for rows in w0[first_final:]), "final never reverts"
    last = snaps[-1]["rows"]
    text = " ".join(r[2] for r in last if "interim" not in r[1]).lower()
    assert "good morning" in text and "planning meeting" in text, text
    # Window text is never shown twice: each window's rows appear once, in order.
    windows = [r[0] for r in last]
    assert windows == sorted(windows, key=int)
    # The same captions went out on the SSE feed, and the key never reached the server's request log.
    assert any(d["is_final"] and d["window_index"] == 0 for d in feed.windows())
    assert seen_requests and not any(key in m for m in seen_requests)

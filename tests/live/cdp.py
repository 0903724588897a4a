"""A headless Chromium driven over the DevTools protocol, for page tests (no extra packages)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.live.conftest import require
from tests.live.test_whip_browser import devtools_page


class Page:
    """One page target: evaluate JavaScript, wait for conditions, take screenshots."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.n = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events in between are ignored."""
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def js(self, expression: str) -> Any:
        """Value of a JavaScript expression (promises awaited); page exceptions fail the test."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page error in {expression[:80]!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"page never satisfied {expression!r} (last: {value!r})")

    async def goto(self, url: str) -> None:
        """Navigate and wait for the document to load."""
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(0.2)
        await self.until("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def viewport(self, width: int, height: int, mobile: bool) -> None:
        """Emulate a screen size (a phone: 390 x 844, mobile)."""
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile
        )

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def launch(profile: Path, url: str = "about:blank") -> subprocess.Popen[bytes]:
    """Start headless Chromium with a DevTools port on loopback."""
    exe = require("chromium")
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        url,
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def close(browser: subprocess.Popen[bytes]) -> None:
    """Stop Chromium (terminate, then kill)."""
    browser.terminate()
    try:
        browser.wait(15)
    except subprocess.TimeoutExpired:
        browser.kill()
        browser.wait(5)


__all__ = ["Page", "close", "devtools_page", "launch"]

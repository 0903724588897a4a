"""A viewer of a session's live feed: reads its server-sent events in a thread, with arrival times."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any


class FeedReader(threading.Thread):
    """Reads ``url`` (``/sessions/ID/events``) until the server ends the stream or stops.

    ``events`` holds (arrival time on ``time.monotonic``, event name, data) in order.
    A dropped connection ends the reader quietly (the service stopping is how
    most runs end); ``error`` keeps it.
    """

    def __init__(self, url: str, timeout: float = 900.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.timeout = timeout
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:
                event = None
                for raw in resp:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event:
                        self.events.append((time.monotonic(), event, json.loads(line[6:])))
        except OSError as exc:
            self.error = exc

    def timed(self, name: str = "window") -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, data) of the ``name`` events so far."""
        return [(at, d) for at, ev, d in list(self.events) if ev == name]

    def windows(self) -> list[dict[str, Any]]:
        """The data of the ``window`` events so far."""
        return [d for _, d in self.timed("window")]

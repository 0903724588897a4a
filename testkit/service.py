"""``flowbot serve`` in-process for tests and benches, and a session started through its API."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.settings import Settings

if TYPE_CHECKING:
    from flowbot.serve import LiveService


def live_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a service on free loopback ports (HTTP and RTMP) in ``data_dir``; ``overrides`` win."""
    fields: dict[str, Any] = {"diarization": "none", "port": 0, "rtmp_port": 0, **overrides}
    return Settings.from_env({}, data_dir=data_dir, **fields)


@contextmanager
def live_service(settings: Settings) -> Iterator[LiveService]:
    """A started :class:`flowbot.serve.LiveService`, stopped on exit."""
    from flowbot.serve import LiveService

    svc = LiveService(settings).start()
    try:
        yield svc
    finally:
        svc.stop()


def start_session(base: str, meeting_id: str = "m", user_id: str = "u", topic: str = "t") -> dict[str, Any]:
    """``start_session`` through the coordinator API at ``base``; the reply's body."""
    body = json.dumps({"action": "start_session", "meeting_id": meeting_id, "user_id": user_id, "topic": topic})
    req = urllib.request.Request(f"{base}/api", body.encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def end_session(base: str, session_id: str) -> dict[str, Any]:
    """``end_session`` through the coordinator API at ``base`` (ingest ends, the workflow starts); the reply."""
    body = json.dumps({"action": "end_session", "session_id": session_id})
    req = urllib.request.Request(f"{base}/api", body.encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))

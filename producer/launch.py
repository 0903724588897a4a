"""Embedded-mode producer launcher: the in-process RTMP front takes the session's key."""

from __future__ import annotations

import contextlib

from control.launch import LaunchResult
from producer.rtmp import RtmpIngest
from stores.base import Session


class EmbeddedLauncher:
    """:class:`control.launch.ProducerLauncher` for ``flowbot serve`` (one machine)."""

    def __init__(self, ingest: RtmpIngest, public_host: str) -> None:
        self.ingest = ingest
        self.public_host = public_host

    def launch(self, session: Session) -> LaunchResult:
        """Register the session's stream key; the publisher may connect right away."""
        self.ingest.register(session.session_id, session.stream_key)
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        return LaunchResult(
            rtmp_url=f"rtmp://{host}:{self.ingest.port}/live/{session.stream_key}",
            producer_ref=f"embedded:{session.session_id}",
        )

    def stop(self, session: Session) -> None:
        """Revoke the key, disconnect the publisher and write the end-of-stream record."""
        # A session never launched here (e.g. before a restart) has nothing to end.
        with contextlib.suppress(KeyError):
            self.ingest.end(session.session_id)

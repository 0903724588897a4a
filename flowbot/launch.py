"""Embedded-mode producer launcher: the in-process ingest hub takes the session's key.

It joins control's :class:`control.launch.ProducerLauncher` to the producer's
RTMP front, so it lives here with the rest of ``flowbot serve``'s composition
(producer and control do not import each other).
"""

from __future__ import annotations

import contextlib

from control.launch import LaunchResult
from producer.rtmp_relay import APP, RtmpRelay
from stores.base import Session


class EmbeddedLauncher:
    """:class:`control.launch.ProducerLauncher` for ``flowbot serve`` (one machine)."""

    def __init__(self, rtmp: RtmpRelay, public_host: str) -> None:
        self.rtmp = rtmp
        self.public_host = public_host

    def launch(self, session: Session) -> LaunchResult:
        """Register the session's stream key with the hub; the publisher may connect right away."""
        self.rtmp.hub.register(session.session_id, session.stream_key)
        return self._where(session)

    def rotate_key(self, session: Session) -> LaunchResult:
        """:class:`control.launch.KeyRotation`: the hub takes the new key and cuts off the old one's publisher."""
        self.rtmp.hub.rotate(session.session_id, session.stream_key)
        return self._where(session)

    def _where(self, session: Session) -> LaunchResult:
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        return LaunchResult(
            rtmp_url=f"rtmp://{host}:{self.rtmp.port}/{APP}/{session.stream_key}",
            producer_ref=f"embedded:{session.session_id}",
        )

    def stop(self, session: Session) -> None:
        """Revoke the key, disconnect the publisher and write the end-of-stream record."""
        # A session never launched here (e.g. before a restart) has nothing to end.
        with contextlib.suppress(KeyError):
            self.rtmp.hub.end(session.session_id)

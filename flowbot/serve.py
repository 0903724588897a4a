"""``flowbot serve``: the whole live system in one process on one machine.

- the coordinator API (``POST /api``, the same handler as the Lambda function URL),
- RTMP ingest on one port for every live session (stream keys checked),
- WHIP ingest for browsers (``/sessions/<id>/whip``),
- the processor consuming the embedded stream,
- a page per session (``/sessions/<id>``) whose transcript grows live over
  server-sent events (``/sessions/<id>/events``), with notes at the end.

The HTTP side is an ASGI application (:mod:`flowbot.web.app`) on uvicorn
(:mod:`flowbot.web.server`); docs/web.md describes it, its limits and how to put
it behind a TLS proxy. Binding beyond loopback requires ``FLOWBOT_API_TOKEN``.
"""

from __future__ import annotations

import logging
import signal
import threading

from contracts.parts import LIVE
from contracts.settings import Settings
from control import sessions
from control.api import Coordinator
from control.context import build_local_context
from control.recovery import recover_sessions
from flowbot.retranscribe import BackgroundRetranscriber
from flowbot.web.app import build_app
from flowbot.web.guard import is_loopback
from flowbot.web.server import HttpLimits, HttpServer
from stores.base import Session
from streams.factory import embedded_consumer, embedded_stream
from streams.thread import ConsumerThread

log = logging.getLogger(__name__)


class LiveService:
    """Everything ``flowbot serve`` runs, startable from tests."""

    def __init__(self, settings: Settings, *, http_limits: HttpLimits | None = None) -> None:
        if not is_loopback(settings.host) and not settings.api_token:
            raise ValueError(
                f"refusing to bind {settings.host} without FLOWBOT_API_TOKEN: anyone on the "
                "network could start sessions and read transcripts"
            )
        from flowbot.launch import EmbeddedLauncher
        from flowbot.pipeline import LocalProcessors
        from producer.hub import IngestHub, load_end_key
        from producer.rtmp_relay import RtmpRelay

        self.settings = settings
        #: Single machine: ingest writes to the embedded stream, which a processor thread consumes.
        self.stream = embedded_stream(settings)
        self.processors = LocalProcessors(settings)
        # Models load before anything is accepted; the diarizer goes on loading in the
        # background (serve() raises its error, processors.check()).
        parts = self.processors.parts()
        self.consumer = ConsumerThread(embedded_consumer(settings, self.processors, self.stream))
        # A kept end key: sessions resumed after a restart still end with their own secret.
        end_key = load_end_key(settings.data_dir / "ingest-end.key")
        self.hub = IngestHub(self.stream, on_live=self._on_live, end_key=end_key)
        self.rtmp = RtmpRelay(
            self.hub, settings.host, settings.rtmp_port, max_connections=settings.rtmp_max_connections
        )
        public = settings.public_host or settings.host
        self.ctx = build_local_context(
            settings,
            EmbeddedLauncher(self.rtmp, public),
            base_url=self.public_url,
            interim_stats=parts.interim.stats if parts.interim is not None else None,
            retranscribe=BackgroundRetranscriber(settings),
        )
        self.coordinator = Coordinator(self.ctx)
        from producer.whip import WhipIngest

        # Without aiortc (not in the demo profile: contracts.parts.LIVE) WHIP offers get a 501.
        self.whip = WhipIngest(self.hub, settings.host) if LIVE.installed() else None
        limits = http_limits or HttpLimits()
        self.web = build_app(self.ctx, self.coordinator, self.whip, body_seconds=limits.body_seconds)
        self.http = HttpServer(self.web, settings.host, settings.port, limits)

    def _on_live(self, session_id: str) -> None:
        try:
            sessions.go_live(self.ctx.sessions, session_id)
            log.info("session live", extra={"session": session_id})
        except Exception as exc:  # already live after a reconnect, or ended meanwhile
            log.debug("live transition skipped", extra={"session": session_id, "why": str(exc)})

    @property
    def url(self) -> str:
        """Base URL of the HTTP server."""
        host, port = self.http.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def public_url(self) -> str:
        """Base URL for links handed out (session pages): ``FLOWBOT_PUBLIC_HOST`` when set."""
        if not self.settings.public_host:
            return self.url
        return f"http://{self.settings.public_host}:{self.http.address[1]}"

    def _resume_ingest(self, session: Session) -> None:
        """After a restart, accept the key of a session still open, continuing its timeline."""
        from contracts.frames import FrameKind, FrameRecord
        from producer.framer import TimelinePosition

        last = self.stream.last_record(session.session_id)
        position = None
        if last is not None:
            frame = FrameRecord.decode(last.data)
            if frame.kind == FrameKind.END:
                return
            position = TimelinePosition(frame.seq + 1, frame.end_offset)
        self.hub.register(session.session_id, session.stream_key, position=position)
        log.info(
            "session ingest resumed",
            extra={"session": session.session_id, "offset": position.next_offset if position else 0},
        )

    def _on_startup(self) -> None:
        """Start-up hook: runs before ingest and the web front accept anything.

        Every session a previous run left unfinished carries on (control.recovery).
        """
        recover_sessions(self.ctx, self._resume_ingest)

    def start(self) -> LiveService:
        """Start processor, ingest and the web front (WHIP shares the web front's event loop)."""
        self.consumer.start()
        self._on_startup()
        self.rtmp.start()
        self.http.start()
        log.info("flowbot serving", extra={"http": self.url, "rtmp_port": self.rtmp.port})
        return self

    def stop(self) -> None:
        """Hang up WHIP publishers, stop the web front, then the RTMP front and the processor (checkpoint)."""
        if self.whip is not None:
            self.whip.stop()
        self.http.stop(before=self.web.hub.close)  # viewers' event streams end first
        self.rtmp.stop()
        self.consumer.stop()
        self.processors.stop()


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM."""
    service = LiveService(settings).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            service.processors.check()  # a diarizer that failed to load in the background
    finally:
        service.stop()
    return 0

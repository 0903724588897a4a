"""``flowbot serve``: the whole live system in one process on one machine.

- the coordinator API (``POST /api``, the same handler as the Lambda function URL),
- RTMP ingest on one port for every live session (stream keys checked),
- the processor consuming the embedded stream,
- a page per session (``/sessions/<id>``) whose transcript grows live over
  server-sent events (``/sessions/<id>/events``), with notes at the end.

Binding beyond loopback requires ``FLOWBOT_API_TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from contracts.frames import validate_session_id
from contracts.settings import Settings
from control.api import Coordinator
from control.context import ControlContext, build_local_context
from control.recovery import recover_sessions
from flowbot.formats import FORMATS, render
from stores.base import Session, SessionNotFound, SessionState

log = logging.getLogger(__name__)

TERMINAL = {SessionState.COMPLETED, SessionState.PARTIAL, SessionState.FAILED}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sse_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class LiveFeed:
    """Turns store changes of one session into SSE events (polling the store keeps
    the processor and the web server decoupled, even across processes)."""

    def __init__(self, ctx: ControlContext, session_id: str, poll: float = 0.2) -> None:
        self.ctx = ctx
        self.session_id = session_id
        self.poll = poll

    def events(
        self, since: int = 0, stop: threading.Event | None = None, max_seconds: float | None = None
    ) -> Iterator[bytes]:
        """Yield SSE byte chunks until the session reaches a terminal state."""
        revision = since
        last_state = None
        deadline = time.monotonic() + max_seconds if max_seconds else None
        idle = 0.0
        while not (stop and stop.is_set()):
            session = self.ctx.sessions.get(self.session_id)
            for change in self.ctx.transcripts.changes_since(self.session_id, revision):
                revision = max(revision, change.revision)
                yield sse_event(
                    "window",
                    {
                        "window_index": change.window_index,
                        "revision": change.revision,
                        "is_final": change.is_final,
                        "segments": [s.to_dict() for s in change.segments],
                        "speakers": self.ctx.transcripts.speakers(self.session_id),
                    },
                    change.revision,
                )
                idle = 0.0
            if session.state != last_state:
                last_state = session.state
                yield sse_event("state", session.public_view())
            if session.state in TERMINAL:
                notes = self.ctx.transcripts.get_notes(self.session_id)
                if notes is not None:
                    yield sse_event("notes", notes)
                return
            if deadline and time.monotonic() > deadline:
                return
            time.sleep(self.poll)
            idle += self.poll
            if idle >= 15:
                idle = 0.0
                yield b": keep-alive\n\n"


def make_handler(
    ctx: ControlContext, coordinator: Coordinator, extra_routes: dict[str, Any] | None = None
) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one context."""
    token = ctx.settings.api_token
    page = resources.files("flowbot").joinpath("static/session.html").read_text()
    index = resources.files("flowbot").joinpath("static/index.html").read_text()
    routes = extra_routes if extra_routes is not None else {}
    static = {
        f.name: f.read_bytes()
        for f in resources.files("flowbot").joinpath("static").iterdir()
        if f.name.endswith(".js")
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "flowbot"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http " + format % args)

        # -- helpers -------------------------------------------------------------
        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, json.dumps({"error": {"code": code, "message": message}}).encode())

        def _authorized(self, query: dict[str, list[str]]) -> bool:
            if not token:
                return True
            given = self.headers.get("authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return True
            return hmac.compare_digest(query.get("token", [""])[0].encode(), token.encode())

        def _body(self) -> bytes:
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(min(length, 1 << 20)) if length else b""

        # -- routes ----------------------------------------------------------------
        def do_POST(self) -> None:
            url = urlparse(self.path)
            parts = [p for p in url.path.split("/") if p]
            if url.path in ("/", "/api"):
                resp = coordinator.handle("POST", dict(self.headers.items()), self._body())
                self._send(resp.status, resp.json().encode())
                return
            if len(parts) == 3 and parts[0] == "sessions" and parts[2] in routes:
                routes[parts[2]](self, parts[1])
                return
            self._error(404, "not_found", f"no route for POST {url.path}")

        def do_DELETE(self) -> None:
            # WHIP: DELETE /sessions/<id>/whip/<resource> ends a browser publish.
            parts = [p for p in urlparse(self.path).path.split("/") if p]
            if len(parts) == 4 and parts[0] == "sessions" and parts[2] in routes:
                routes[parts[2]](self, parts[1])
                return
            self._error(404, "not_found", f"no route for DELETE {self.path}")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            if url.path == "/healthz":
                self._send(200, b'{"ok": true}')
                return
            if len(parts) == 2 and parts[0] == "static" and parts[1] in static:
                # Page scripts hold no data: served without the API token.
                self._send(200, static[parts[1]], "text/javascript; charset=utf-8")
                return
            if not self._authorized(query):
                self._error(401, "unauthorized", "missing or wrong bearer token")
                return
            if not parts:
                self._send(200, index.encode(), "text/html; charset=utf-8")
                return
            if parts[0] != "sessions" or len(parts) < 2:
                self._error(404, "not_found", f"no route for GET {url.path}")
                return
            try:
                session_id = validate_session_id(parts[1])
                ctx.sessions.get(session_id)
            except (ValueError, SessionNotFound):
                self._error(404, "unknown_session", f"no session {parts[1]!r}")
                return
            if len(parts) == 2:
                html = page.replace("__SESSION_ID__", session_id)
                self._send(200, html.encode(), "text/html; charset=utf-8")
            elif parts[2] == "events":
                self._stream(session_id, int(self.headers.get("last-event-id") or 0))
            elif parts[2] == "transcript":
                fmt = query.get("format", ["json"])[0]
                if fmt not in FORMATS:
                    self._error(400, "invalid_format", f"format must be one of {', '.join(FORMATS)}")
                    return
                body = render(
                    fmt,
                    session_id,
                    ctx.transcripts.segments(session_id),
                    ctx.transcripts.speakers(session_id),
                    ctx.transcripts.get_notes(session_id),
                )
                self._send(
                    200,
                    body.encode(),
                    "application/json" if fmt == "json" else "text/plain; charset=utf-8",
                )
            else:
                self._error(404, "not_found", f"no route for GET {url.path}")

        def _stream(self, session_id: str, since: int) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-store")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in LiveFeed(ctx, session_id).events(since):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                log.debug("live feed client left", extra={"session": session_id})

    return Handler


class LiveService:
    """Everything ``flowbot serve`` runs, startable from tests."""

    def __init__(self, settings: Settings) -> None:
        if not is_loopback(settings.host) and not settings.api_token:
            raise ValueError(
                f"refusing to bind {settings.host} without FLOWBOT_API_TOKEN: anyone on the "
                "network could start sessions and read transcripts"
            )
        from flowbot.pipeline import EmbeddedProcessor
        from producer.launch import EmbeddedLauncher
        from producer.rtmp import RtmpIngest

        self.settings = settings
        self.processor = EmbeddedProcessor(settings)
        self.ingest = RtmpIngest(
            settings.host,
            settings.rtmp_port,
            self.processor.stream,
            on_live=self._on_live,
            max_connections=settings.rtmp_max_connections,
        )
        public = settings.public_host or settings.host
        self.ctx = build_local_context(settings, EmbeddedLauncher(self.ingest, public))
        if self.processor.parts.interim is not None:
            self.ctx.interim_stats = self.processor.parts.interim.stats
        self.coordinator = Coordinator(self.ctx)
        self.routes: dict[str, Any] = {}
        from producer.whip import WhipIngest

        self.whip = WhipIngest(self.ingest, settings.host)
        self.routes["whip"] = self.whip.handle
        self.httpd = ThreadingHTTPServer(
            (settings.host, settings.port), make_handler(self.ctx, self.coordinator, self.routes)
        )
        self.httpd.daemon_threads = True
        self._http_thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def _on_live(self, session_id: str) -> None:
        try:
            self.ctx.sessions.transition(session_id, [SessionState.STARTING], SessionState.LIVE)
            log.info("session live", extra={"session": session_id})
        except Exception as exc:  # already live after a reconnect, or ended meanwhile
            log.debug("live transition skipped", extra={"session": session_id, "why": str(exc)})

    @property
    def url(self) -> str:
        """Base URL of the HTTP server."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _resume_ingest(self, session: Session) -> None:
        """After a restart, accept the key of a session still open, continuing its timeline."""
        from contracts.frames import FrameKind, FrameRecord
        from producer.framer import TimelinePosition

        last = self.processor.stream.last_record(session.session_id)
        position = None
        if last is not None:
            frame = FrameRecord.decode(last.data)
            if frame.kind == FrameKind.END:
                return
            position = TimelinePosition(frame.seq + 1, frame.end_offset)
        self.ingest.register(session.session_id, session.stream_key, position=position)
        log.info(
            "session ingest resumed",
            extra={"session": session.session_id, "offset": position.next_offset if position else 0},
        )

    def start(self) -> LiveService:
        """Start processor, ingest and HTTP server."""
        self.processor.start()
        recover_sessions(self.ctx, self._resume_ingest)  # every non-terminal session carries on
        self.ingest.start()
        self.whip.start()
        self._http_thread.start()
        base = (
            self.url
            if not self.settings.public_host
            else f"http://{self.settings.public_host}:{self.httpd.server_address[1]}"
        )
        self.ctx.page_url = lambda sid: f"{base}/sessions/{sid}"
        log.info("flowbot serving", extra={"http": self.url, "rtmp_port": self.ingest.port})
        return self

    def stop(self) -> None:
        """Stop accepting, then stop the processor gracefully (checkpoint)."""
        self.httpd.shutdown()
        self.whip.stop()
        self.ingest.stop()
        self.processor.stop()


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM."""
    service = LiveService(settings).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    service.stop()
    return 0

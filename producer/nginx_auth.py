"""Loopback HTTP endpoint that nginx-rtmp asks before accepting a publish.

nginx calls ``GET /on_publish?app=live&name=KEY&addr=...`` (``notify_method
get``); a 2xx answer lets the publish through, anything else makes nginx drop
the connection. The key must belong to a session in state starting or live
(and, in a per-session producer task, to that task's session).
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from control.sessions import ACTIVE
from producer.hub import key_fingerprint
from producer.rtmp_relay import APP
from stores.base import SessionStore

log = logging.getLogger(__name__)


class NginxAuthServer:
    """``on_publish`` / ``on_publish_done`` callbacks for nginx-rtmp, on 127.0.0.1."""

    def __init__(self, sessions: SessionStore, *, session_id: str | None = None, port: int = 0) -> None:
        self.sessions = sessions
        self.session_id = session_id
        handler = _handler_for(self)
        # Loopback only: nginx runs next to the producer, nothing else may ask.
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="nginx-auth", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self, app: str, key: str) -> tuple[bool, str]:
        """(allowed, reason) for a publish of ``key`` on ``app``."""
        if app != APP:
            return False, "unknown application"
        if not key:
            return False, "no stream key"
        try:
            session = self.sessions.find_by_stream_key(key)
        except Exception:
            # A store outage must refuse, not let an unchecked publisher in.
            log.exception("session store lookup failed")
            return False, "session store unavailable"
        if session is None:
            return False, "unknown stream key"
        if self.session_id is not None and session.session_id != self.session_id:
            return False, "key of another session"
        if session.state not in ACTIVE:
            return False, f"session is {session.state.value}"
        return True, session.session_id


def _handler_for(auth: NginxAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            app = query.get("app", [""])[0].split("?", 1)[0]
            key = query.get("name", [""])[0].split("?", 1)[0]
            addr = query.get("addr", [""])[0]
            if url.path == "/on_publish":
                allowed, detail = auth.check(app, key)
                if allowed:
                    log.info("nginx publish allowed", extra={"session": detail, "peer": addr})
                    self._reply(HTTPStatus.OK)
                else:
                    log.warning(
                        "nginx publish refused",
                        extra={"reason": detail, "app": app[:64], "key": key_fingerprint(key), "peer": addr},
                    )
                    self._reply(HTTPStatus.FORBIDDEN)
            elif url.path == "/on_publish_done":
                log.info("nginx publish done", extra={"key": key_fingerprint(key), "peer": addr})
                self._reply(HTTPStatus.OK)
            else:
                self._reply(HTTPStatus.NOT_FOUND)

        def do_POST(self) -> None:
            # nginx's default notify method; the config sets GET, so this is a misconfiguration.
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED)

        def _reply(self, status: HTTPStatus) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            # Request lines carry the stream key; the handler logs a fingerprint instead.
            pass

    return Handler

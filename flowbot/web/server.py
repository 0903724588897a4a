"""uvicorn, run in a thread of ``flowbot serve`` with the limits the web front relies on.

uvicorn parses requests (httptools), enforces framing (a bad or negative
``Content-Length`` is a 400 before any byte of body is read; a body the app
did not read is skipped by length, never parsed as the next request), handles
keep-alive and writes each response without Nagle delays. What it lacks is a
deadline for a request's *headers*: its keep-alive timer is cancelled by any
byte, so a client trickling a header a byte at a time would hold a connection
for ever. :class:`_HeaderDeadline` adds that one timer (armed when a
connection opens and after each response, cancelled when a request's headers
are complete), the way nginx's ``client_header_timeout`` works.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: The ASGI scope extension under which each request finds its :class:`Connection`.
CONNECTION_EXTENSION = "flowbot.connection"


@dataclass(frozen=True)
class Connection:
    """What a long response (the live feed) may do to its own connection."""

    transport: asyncio.Transport

    def abort(self) -> None:
        """Close now, dropping what is buffered (``close`` would wait for the peer to read it)."""
        self.transport.abort()

    def limit_send_buffer(self, size: int) -> None:
        """Fix the kernel's send buffer (Linux doubles ``size``): autotuned, it grows to 4 MiB of
        kernel memory for each peer that does not read."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


@dataclass(frozen=True)
class HttpLimits:
    """Connection limits of the web front (see docs/web.md for the reasoning)."""

    #: A request's headers must be complete this long after the connection opened or went idle.
    header_seconds: float = 10.0
    #: A request body must be complete within this long (408 otherwise).
    body_seconds: float = 10.0
    #: An idle keep-alive connection is closed after this long.
    keep_alive_seconds: int = 5
    #: Connections (viewers included) served at once; more get 503 (about 25 KiB each, see bench/viewers.py).
    max_connections: int = 4096
    #: A connection's write buffer above this makes the next send wait (asyncio's default is 64 KiB).
    #: With the live feed's 16 KiB pieces, a viewer that never reads pins at most about 40 KiB.
    write_buffer_bytes: int = 16 * 1024
    #: Pending connections the kernel queues (the old server had 5).
    backlog: int = 2048
    #: On shutdown, in-flight requests get this long to finish.
    shutdown_seconds: int = 5


class _HeaderDeadline(HttpToolsProtocol):
    """httptools protocol with a deadline for request headers (slow-loris defence)."""

    header_seconds = 10.0
    write_buffer_bytes = 16 * 1024
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn declares it
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=self.write_buffer_bytes)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        scope = cast(dict[str, Any], self.scope)
        scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = Connection(self.transport)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if not in_flight and not self.transport.is_closing():
            log.debug("http header deadline passed; closing", extra={"peer": str(self.client)})
            self.transport.close()


class HttpServer:
    """An ASGI app on uvicorn in a background thread, bound before it starts (port 0 works)."""

    def __init__(self, app: Any, host: str, port: int, limits: HttpLimits | None = None) -> None:
        self.limits = limits or HttpLimits()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP,
        # and accepted sockets inherit it. With proto 0, Nagle + delayed ACK made every keep-alive
        # response wait ~44 ms (bench/viewers.py api_idle: p50 47 ms -> 2-3 ms).
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        protocol = type(
            "HeaderDeadline",
            (_HeaderDeadline,),
            {"header_seconds": self.limits.header_seconds, "write_buffer_bytes": self.limits.write_buffer_bytes},
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            loop="asyncio",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=self.limits.keep_alive_seconds,
            limit_concurrency=self.limits.max_connections,
            backlog=self.limits.backlog,
            timeout_graceful_shutdown=self.limits.shutdown_seconds,
        )
        self.server = uvicorn.Server(config)
        # uvicorn's start/stop lines carry terminal colour codes in an extra field; flowbot logs
        # its own "flowbot serving" line, so only uvicorn's warnings and errors are kept.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._error: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

    def start(self, timeout: float = 30.0) -> HttpServer:
        """Start serving; returns once the app's start-up ran and the socket accepts."""
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self.server.started or self._error is not None or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self.server.started:
            raise RuntimeError(f"the web front did not start: {self._error!r}")
        return self

    def stop(self, before: Callable[[], None] | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded), run the app's shutdown.

        ``before`` runs on the server's loop first: uvicorn waits for open responses
        before the app's lifespan shutdown, so endless ones (the live feed's event
        streams) must be ended here, or they are cancelled with a traceback each.
        """
        if before is not None and self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(before)
        self.server.should_exit = True
        self._thread.join(self.limits.shutdown_seconds + 10)

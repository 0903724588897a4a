"""The web front's request rules: who may call, from where, with what body.

- **Host** (every route but ``/healthz`` and ``/static``; :class:`RequestGuard`): a browser page on any
  site can make a name of its own resolve to 127.0.0.1 (DNS rebinding) and then
  read this server as "same origin"; the ``Host`` it sends is its own name, so
  only the names this server is known by are served (loopback names, the bind
  address, ``FLOWBOT_PUBLIC_HOST``; any name when bound to a wildcard address,
  where an API token is mandatory anyway).
- **Origin** (every method but GET/HEAD/OPTIONS: the API and WHIP; :class:`RequestGuard`): a browser sends
  ``Origin`` on every cross-origin POST/DELETE; it must be this server (the
  request's own ``Host``) or ``FLOWBOT_PUBLIC_HOST``. ``Sec-Fetch-Site:
  cross-site`` is refused too. Clients that are not browsers send neither.
- **Content types**: the API takes ``application/json`` only and WHIP
  ``application/sdp`` only. A page on another site can POST ``text/plain``
  without a CORS preflight, never ``application/json``.
- **Credentials**: the API token (``Authorization: Bearer``, any scheme case,
  or ``?token=`` where a header cannot be set: page links, ``EventSource``)
  makes the caller the session's owner; a per-session view token (``?view=``)
  lets a viewer read one session's page, feed, transcript and audio, nothing else.
  :meth:`Guard.require` is the one access decision for pages, feed, downloads and API
  (:mod:`flowbot.web.access` applies it per route).
- **Bodies** are read with a byte limit and a time limit; an over-limit body is
  refused with ``Connection: close`` so its rest is never parsed as a request.

Every refusal is a :class:`contracts.errors.HttpError`, answered with its JSON
body (:func:`error_response`) and a 4xx status.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.errors import HttpError
from contracts.settings import Settings
from control.bearer import BearerError, bearer_token, same_secret

#: Headers on every response. The pages load scripts and styles only from this server
#: (no inline code), so a transcript line can never run as script.
SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    # Page URLs may carry ?token= / ?view=: never send them to another site.
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
_WILDCARDS = {"", "0.0.0.0", "::"}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def error_response(error: HttpError) -> JSONResponse:
    """The answer to a refused request: its JSON body, never cached."""
    headers = {"cache-control": "no-store"}
    if error.close:
        headers["connection"] = "close"
    return JSONResponse(error.body(), error.status, headers=headers)


def ascii_number(text: str, max_digits: int) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    Not ``str.isdigit``: it accepts "²", "①" and other Unicode digits that ``int()`` then
    refuses (a 500, or a dead event stream, before).
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (a server bound there needs no API token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Access(StrEnum):
    """What a request may do with a session."""

    OWNER = "owner"  # the operator: the API token, or anyone on a loopback server without one
    VIEWER = "viewer"  # one session's read-only view token


def _host_name(netloc: str) -> str:
    """``host[:port]`` -> host, lower-cased, IPv6 brackets removed."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


@dataclass
class Guard:
    """The rules above, bound to one server's settings."""

    settings: Settings

    def __post_init__(self) -> None:
        s = self.settings
        self.token = s.api_token
        self.any_host = s.host in _WILDCARDS and not s.public_host
        # Loopback names whenever loopback reaches this server (a loopback or wildcard bind).
        self.hosts = set(_LOOPBACK_NAMES) if is_loopback(s.host) or s.host in _WILDCARDS else set()
        self.hosts |= {h.lower().strip("[]") for h in (s.host, s.public_host) if h and h not in _WILDCARDS}

    # -- where from ----------------------------------------------------------------------
    def check_host(self, request: Request) -> None:
        """Refuse a ``Host`` this server is not known by (DNS rebinding)."""
        if self.any_host:
            return
        if _host_name(request.headers.get("host", "")) not in self.hosts:
            raise HttpError(400, "host_not_allowed", "this server does not answer to that Host name")

    def check_origin(self, request: Request) -> None:
        """Refuse state changes a browser makes on behalf of another site (CSRF)."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            raise HttpError(403, "cross_site", "cross-site requests may not change state")
        origin = request.headers.get("origin")
        if origin is None:
            return
        parts = urlsplit(origin)
        same = parts.netloc.lower() == request.headers.get("host", "").lower()
        public = bool(self.settings.public_host) and (parts.hostname or "") == self.settings.public_host.lower()
        if origin == "null" or not (same or public):
            raise HttpError(403, "cross_origin", f"requests from origin {origin[:100]!r} may not change state")

    # -- who -------------------------------------------------------------------------------
    def view_token(self, session_id: str) -> str | None:
        """The read-only view token of one session (None when the server has no API token)."""
        if not self.token:
            return None
        mac = hmac.new(self.token.encode(), b"flowbot-view:" + session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def access(self, request: Request, session_id: str | None = None) -> Access | None:
        """OWNER, VIEWER (of ``session_id``) or None."""
        if not self.token:
            return Access.OWNER
        try:
            given = bearer_token(request.headers)
        except BearerError:
            given = request.query_params.get("token", "")
        if same_secret(given, self.token):
            return Access.OWNER
        if session_id is not None:
            view = request.query_params.get("view", "") or given
            if same_secret(view, self.view_token(session_id) or ""):
                return Access.VIEWER
        return None

    def require(self, request: Request, session_id: str | None = None) -> Access:
        """:meth:`access` or a 401."""
        access = self.access(request, session_id)
        if access is None:
            raise HttpError(401, "unauthorized", "missing or wrong bearer token")
        return access


# -- bodies ---------------------------------------------------------------------------------


def require_content_type(request: Request, expected: str) -> None:
    """415 unless the body is declared ``expected`` (parameters such as charset allowed)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != expected:
        raise HttpError(415, "unsupported_media_type", f"send the body as {expected}")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, at most ``limit`` bytes, within ``timeout`` seconds (413 / 408 otherwise)."""
    declared = ascii_number(request.headers.get("content-length", ""), 18)
    if declared is not None and declared > limit:
        raise HttpError(413, "body_too_large", f"bodies are limited to {limit} bytes", close=True)
    chunks: list[bytes] = []
    size = 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "body_too_large", f"bodies are limited to {limit} bytes", close=True)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise HttpError(408, "body_timeout", f"the body did not arrive within {timeout:g} s", close=True) from None
    return b"".join(chunks)


# -- the middleware ---------------------------------------------------------------------------

#: Paths served to any Host: health checks, and page assets (no credentials, nothing per session).
OPEN_PATHS = ("/healthz", "/static/")
#: Methods that change nothing: no Origin check.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    """ASGI middleware: the Host rule on every route but :data:`OPEN_PATHS`, the Origin rule on
    every method that is not :data:`SAFE_METHODS`, before any route runs.

    Pure ASGI (it reads the scope and never wraps ``send``): the live feed behind it sends one
    message per viewer per event, and every send wrapper is paid that often.
    """

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            try:
                if not scope["path"].startswith(OPEN_PATHS):
                    self.guard.check_host(request)
                if scope["method"] not in SAFE_METHODS:
                    self.guard.check_origin(request)
            except HttpError as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)

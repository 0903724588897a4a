"""The web front's request rules without a server: Host names, Origin, bearer parsing, view tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request

from contracts.errors import HttpError
from contracts.settings import Settings
from control.bearer import BearerError, bearer_token
from flowbot.web.guard import Access, Guard


def req(headers: dict[str, str], query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/api", "headers": raw, "query_string": query.encode()})


def guard(tmp_path: Path, **extra: str) -> Guard:
    return Guard(Settings.from_env({}, data_dir=tmp_path, **extra))


@pytest.mark.parametrize(
    ("bind", "public", "host", "ok"),
    [
        ("127.0.0.1", "", "127.0.0.1:8080", True),
        ("127.0.0.1", "", "localhost:8080", True),
        ("127.0.0.1", "", "[::1]:8080", True),
        ("127.0.0.1", "", "attacker.example:8080", False),
        ("127.0.0.1", "", "", False),
        ("127.0.0.1", "t.example.com", "t.example.com", True),
        ("0.0.0.0", "", "anything.example", True),
        ("0.0.0.0", "t.example.com", "127.0.0.1:8080", True),
        ("0.0.0.0", "t.example.com", "other.example", False),
        ("10.0.0.5", "", "10.0.0.5:8080", True),
        ("10.0.0.5", "", "127.0.0.1:8080", False),
    ],
)
def test_host_names_served(tmp_path: Path, bind: str, public: str, host: str, ok: bool) -> None:
    g = guard(tmp_path, host=bind, public_host=public, api_token="t")
    if ok:
        g.check_host(req({"host": host}))
    else:
        with pytest.raises(HttpError) as err:
            g.check_host(req({"host": host}))
        assert err.value.status == 400


@pytest.mark.parametrize(
    ("origin", "site", "ok"),
    [
        (None, None, True),
        ("http://127.0.0.1:8080", "same-origin", True),
        ("https://t.example.com", None, True),
        ("http://127.0.0.1:9999", None, False),
        ("http://evil.example", None, False),
        ("null", None, False),
        (None, "cross-site", False),
    ],
)
def test_origin_of_state_changes(tmp_path: Path, origin: str | None, site: str | None, ok: bool) -> None:
    g = guard(tmp_path, public_host="t.example.com")
    headers = {"host": "127.0.0.1:8080"}
    if origin:
        headers["origin"] = origin
    if site:
        headers["sec-fetch-site"] = site
    if ok:
        g.check_origin(req(headers))
    else:
        with pytest.raises(HttpError) as err:
            g.check_origin(req(headers))
        assert err.value.status == 403


@pytest.mark.parametrize("value", ["Bearer abc", "bearer abc", "BEARER  abc ", "  Bearer abc"])
def test_bearer_scheme_any_case(value: str) -> None:
    assert bearer_token({"Authorization": value}) == "abc"
    assert bearer_token({"authorization": value}) == "abc"


@pytest.mark.parametrize("value", ["", "Basic abc", "Bearer", "Bearer   ", "abc"])
def test_bearer_refusals(value: str) -> None:
    with pytest.raises(BearerError):
        bearer_token({"authorization": value} if value else {})


def test_access_levels(tmp_path: Path) -> None:
    g = guard(tmp_path, api_token="tok")
    view = g.view_token("s1")
    assert view and view != g.view_token("s2")
    assert g.access(req({"authorization": "bearer tok"})) is Access.OWNER
    assert g.access(req({}, "token=tok")) is Access.OWNER
    assert g.access(req({}, f"view={view}"), "s1") is Access.VIEWER
    assert g.access(req({}, f"view={view}"), "s2") is None
    assert g.access(req({}, f"view={view}")) is None  # no session: the view token opens nothing
    assert g.access(req({"authorization": "Bearer nope"})) is None
    assert guard(tmp_path).access(req({})) is Access.OWNER  # no token: loopback only, the operator


@pytest.mark.parametrize(
    ("method", "path", "host", "origin", "status"),
    [
        ("GET", "/healthz", "rebind.evil.example", None, 200),  # open paths: any Host
        ("GET", "/static/session.js", "rebind.evil.example", None, 200),
        ("GET", "/sessions/x/events", "rebind.evil.example", None, 400),  # the feed too
        ("GET", "/sessions/x", "127.0.0.1:8080", "http://evil.example", 200),  # reads: no Origin rule
        ("POST", "/api", "127.0.0.1:8080", "http://evil.example", 403),
        ("DELETE", "/sessions/x/whip/r", "127.0.0.1:8080", "http://evil.example", 403),
        ("DELETE", "/sessions/x/whip/r", "127.0.0.1:8080", "http://127.0.0.1:8080", 200),
    ],
)
def test_the_guard_middleware_runs_before_every_route(
    tmp_path: Path, method: str, path: str, host: str, origin: str | None, status: int
) -> None:
    import asyncio

    from starlette.types import Message, Receive, Scope, Send

    from flowbot.web.guard import RequestGuard

    reached: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(RequestGuard(inner, guard(tmp_path))(scope, receive, send))
    assert sent[0]["status"] == status
    assert reached == ([path] if status == 200 else [])

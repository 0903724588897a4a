"""The web front of ``flowbot serve`` under malformed, hostile and crowded requests (issue 14).

Each test here is a defect the old ``http.server`` front had (each fails on it):
framing errors answered by reading forever or dropping the connection, the rest
of an over-limit body parsed as a request, a backlog of 5 and a thread per
connection, cross-site POSTs and foreign Host names served, no security
headers, a lower-case ``bearer`` refused, and one store poller per viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.segments import TranscriptSegment, WindowRecord, Word
from contracts.settings import Settings
from flowbot.serve import LiveService
from stores.base import SessionProgress, SessionState

TOKEN = "s3cret-api-token"


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.from_env(
        {}, data_dir=tmp_path / "data", diarization="none", port=0, rtmp_port=0, interim_seconds=0.0, **extra
    )


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LiveService]:
    service = LiveService(settings_for(tmp_path)).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def token_svc(tmp_path: Path) -> Iterator[LiveService]:
    service = LiveService(settings_for(tmp_path, api_token=TOKEN)).start()
    try:
        yield service
    finally:
        service.stop()


def port_of(service: LiveService) -> int:
    return int(service.url.rsplit(":", 1)[1])


def exchange(port: int, data: bytes, timeout: float = 3.0, *, wait_for_close: bool = False) -> bytes:
    """Send raw bytes, return what came back within ``timeout`` (until close if asked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may refuse and close while we still send
            sock.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            got += chunk
            if not wait_for_close and b"\r\n\r\n" in got:
                head, _, body = got.partition(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                    None,
                )
                if length is not None and len(body) >= length:
                    break
        return got


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with exactly the headers given (urllib adds its own)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    raw = exchange(port, ("\r\n".join(head) + "\r\n\r\n").encode() + body, 10.0)
    assert raw, f"no answer to {method} {path}: the connection was dropped"
    status_line, _, rest = raw.partition(b"\r\n")
    header_blob, _, payload = rest.partition(b"\r\n\r\n")
    hdrs = {}
    for line in header_blob.split(b"\r\n"):
        k, _, v = line.decode().partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, payload


def api_body(action: str = "start_session", **fields: str) -> bytes:
    return json.dumps({"action": action, "meeting_id": "m", "user_id": "u", **fields}).encode()


def assert_error(status: int, headers: dict[str, str], body: bytes, code: int) -> dict[str, Any]:
    assert status == code, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    err = json.loads(body)["error"]
    assert err["code"] and err["message"]
    return dict(err)


def start(service: LiveService, **headers: str) -> dict[str, Any]:
    status, _, body = request(
        port_of(service), "POST", "/api", api_body(), {"content-type": "application/json", **headers}
    )
    assert status == 200, body
    return dict(json.loads(body))


# -- framing ---------------------------------------------------------------------------------


def test_negative_content_length_is_refused_before_any_read(token_svc: LiveService) -> None:
    # The old server turned -1 into read(-1): it read until the client stopped, before the 401.
    head = b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n"
    got = exchange(port_of(token_svc), head, timeout=5.0)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]


@pytest.mark.parametrize("value", ["abc", "12x", "1, 2"])
def test_bad_content_length_gets_an_answer_not_a_dropped_connection(svc: LiveService, value: str) -> None:
    head = f"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {value}\r\n\r\n{{}}".encode()
    got = exchange(port_of(svc), head, timeout=5.0)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]


def test_bad_last_event_id_is_a_structured_400(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    for value in ("x", "-3", "1e9", "9" * 40):
        status, headers, body = request(
            port_of(svc), "GET", f"/sessions/{sid}/events", headers={"Last-Event-ID": value}
        )
        assert assert_error(status, headers, body, 400)["code"] == "invalid_last_event_id"


@pytest.mark.parametrize("route", ["api", "whip"])
def test_rest_of_an_over_limit_body_is_never_parsed_as_a_request(svc: LiveService, route: str) -> None:
    started = start(svc)
    port = port_of(svc)
    smuggled = (
        b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(api_body())}\r\n\r\n".encode()
        + api_body()
    )
    if route == "api":
        padding, path, ctype, auth = b" " * (1 << 20), "/api", "application/json", ""
    else:
        padding = b"v=0\r\n" + b"a" * (64 * 1024)
        path, ctype = f"/sessions/{started['session_id']}/whip", "application/sdp"
        auth = f"Authorization: Bearer {started['stream_key']}\r\n"
    body = padding + smuggled
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    got = exchange(port, head + body, timeout=5.0, wait_for_close=True)
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    assert got.count(b"HTTP/1.1 ") == 1, "a second response means the body was read as a request"
    time.sleep(0.5)
    assert len(svc.ctx.sessions.list()) == 1, "the request hidden in the body started a session"


# -- crowds -----------------------------------------------------------------------------------


async def _first_event(port: int, path: str, deadline: float) -> float | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), deadline)
    except (OSError, TimeoutError):
        return None
    t0 = time.monotonic()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    got = b""
    try:
        while b"event: state" not in got:
            chunk = await asyncio.wait_for(reader.read(4096), max(0.01, deadline - (time.monotonic() - t0)))
            if not chunk:
                return None
            got += chunk
        return time.monotonic() - t0
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


def test_300_viewers_opening_one_feed_at_once_all_get_their_first_event(svc: LiveService) -> None:
    # The old server (listen backlog 5, a thread and a store poller per viewer): 139-248 of 300 in 5 s.
    sid = start(svc)["session_id"]
    port = port_of(svc)

    async def crowd() -> list[float | None]:
        return await asyncio.gather(*(_first_event(port, f"/sessions/{sid}/events", 5.0) for _ in range(300)))

    waits = asyncio.run(crowd())
    late = [w for w in waits if w is None]
    assert not late, f"{len(late)} of 300 viewers had no first event within 5 s"


def test_half_sent_requests_are_closed_and_do_not_block_others(tmp_path: Path) -> None:
    from flowbot.web.server import HttpLimits

    service = LiveService(settings_for(tmp_path), http_limits=HttpLimits(header_seconds=1.0)).start()
    socks: list[socket.socket] = []
    try:
        port = port_of(service)
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)
        status, _, body = request(port, "GET", "/healthz")
        assert status == 200 and json.loads(body) == {"ok": True}
        # Trickling a byte now and then does not extend the header deadline.
        time.sleep(0.6)
        for s in socks:
            s.sendall(b"a")
        closed = 0
        for s in socks:
            s.settimeout(5)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                closed += 0
        assert closed == len(socks), f"only {closed} of {len(socks)} half-sent requests were closed"
    finally:
        for s in socks:
            s.close()
        service.stop()


def test_one_store_poller_per_session_not_per_viewer(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    calls = 0
    changes_since = svc.ctx.transcripts.changes_since

    def counted(session_id: str, revision: int) -> Any:
        nonlocal calls
        calls += 1
        return changes_since(session_id, revision)

    svc.ctx.transcripts.changes_since = counted  # type: ignore[method-assign]
    port = port_of(svc)

    async def watch(seconds: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /sessions/{sid}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        end = time.monotonic() + seconds
        with pytest.raises(TimeoutError):
            while time.monotonic() < end:
                await asyncio.wait_for(reader.read(4096), end - time.monotonic())
        writer.close()

    async def crowd() -> None:
        await asyncio.gather(*(watch(2.0) for _ in range(50)))

    t0 = time.monotonic()
    asyncio.run(crowd())
    elapsed = time.monotonic() - t0
    from flowbot.web.feed import POLL_SECONDS

    # One poller: elapsed / POLL_SECONDS reads. The old per-viewer polling (every 0.2 s) made ~500.
    assert calls <= elapsed / POLL_SECONDS + 10, calls


def test_last_event_id_resumes_after_the_revision_seen(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    store = svc.ctx.transcripts

    def seg(win: int, text: str, final: bool) -> TranscriptSegment:
        words = tuple(Word(i * 0.3, (i + 1) * 0.3, " " + w) for i, w in enumerate(text.split()))
        return TranscriptSegment(sid, win, 0, win * 10.0, win * 10.0 + 1, text, "S1", words, is_final=final)

    store.commit_window(
        WindowRecord(sid, 0, 0, 160000), [seg(0, "first window", True)], SessionProgress(sid, 1, 160000)
    )
    store.commit_window(
        WindowRecord(sid, 1, 160000, 320000), [seg(1, "second window", True)], SessionProgress(sid, 2, 320000)
    )
    first_rev = store.changes_since(sid, 0)[0].revision
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
    status, _, body = request(port_of(svc), "GET", f"/sessions/{sid}/events", headers={"Last-Event-ID": str(first_rev)})
    assert status == 200
    text = body.decode()
    assert "second window" in text and "first window" not in text, text
    states = [
        json.loads(line[6:])["state"] for line in text.splitlines() if line.startswith("data: ") and '"state"' in line
    ]
    assert states == ["completed"], text


# -- who and from where ----------------------------------------------------------------------


def test_cross_site_posts_cannot_create_sessions(svc: LiveService) -> None:
    port = port_of(svc)
    # A form or fetch from any web page can send text/plain without a preflight.
    status, h, body = request(port, "POST", "/api", api_body(), {"content-type": "text/plain"})
    assert_error(status, h, body, 415)
    evil = {"content-type": "application/json", "origin": "http://evil.example"}
    assert_error(*request(port, "POST", "/api", api_body(), evil), 403)
    assert_error(
        *request(port, "POST", "/api", api_body(), {"origin": "null", "content-type": "application/json"}), 403
    )
    cross = {"content-type": "application/json", "sec-fetch-site": "cross-site"}
    assert_error(*request(port, "POST", "/api", api_body(), cross), 403)
    assert svc.ctx.sessions.list() == []
    same = {"content-type": "application/json", "origin": f"http://127.0.0.1:{port}"}
    status, _, body = request(port, "POST", "/api", api_body(), same)
    assert status == 200, body


def test_foreign_host_names_are_not_served(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    port = port_of(svc)
    for path in ("/", f"/sessions/{sid}", f"/sessions/{sid}/events", f"/sessions/{sid}/transcript"):
        status, h, body = request(port, "GET", path, host=f"rebind.evil.example:{port}")
        assert assert_error(status, h, body, 400)["code"] == "host_not_allowed", path
    status, _, _ = request(port, "GET", f"/sessions/{sid}", host=f"localhost:{port}")
    assert status == 200


def test_every_response_has_security_headers(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    svc.ctx.sessions.transition(sid, [SessionState.STARTING], SessionState.COMPLETED)
    port = port_of(svc)
    for method, path in (
        ("GET", "/"),
        ("GET", f"/sessions/{sid}"),
        ("GET", f"/sessions/{sid}/events"),
        ("GET", "/nothing"),
        ("POST", "/api"),
        ("GET", "/static/session.js"),
    ):
        _, h, _ = request(port, method, path, headers={"content-type": "application/json"})
        assert h.get("x-content-type-options") == "nosniff", (path, h)
        assert "default-src 'self'" in h.get("content-security-policy", ""), (path, h)
        assert h.get("referrer-policy") == "no-referrer", (path, h)


def test_bearer_scheme_is_case_insensitive(token_svc: LiveService) -> None:
    port = port_of(token_svc)
    for scheme in ("Bearer", "bearer", "BEARER"):
        auth = {"authorization": f"{scheme} {TOKEN}", "content-type": "application/json"}
        status, _, body = request(port, "POST", "/api", api_body(), auth)
        assert status == 200, (scheme, body)
        status, _, _ = request(port, "GET", "/", headers=auth)
        assert status == 200, scheme
    assert_error(*request(port, "POST", "/api", api_body(), {"authorization": "Bearer nope"}), 415)
    wrong = {"authorization": "Bearer nope", "content-type": "application/json"}
    assert_error(*request(port, "POST", "/api", api_body(), wrong), 401)
    assert_error(*request(port, "GET", "/", headers={"authorization": "Basic abc"}), 401)


def test_view_token_reads_one_session_and_changes_nothing(token_svc: LiveService) -> None:
    port = port_of(token_svc)
    owner = {"authorization": f"Bearer {TOKEN}"}
    sid = start(token_svc, **owner)["session_id"]
    other = start(token_svc, **owner)["session_id"]
    status, _, body = request(port, "GET", f"/sessions/{sid}/info", headers=owner)
    info = json.loads(body)
    assert status == 200 and info["can_edit"] is True
    share = info["share_path"]
    assert share.startswith(f"/sessions/{sid}?view=")
    view = share.split("view=")[1]
    status, _, body = request(port, "GET", f"/sessions/{sid}/info?view={view}")
    assert status == 200 and json.loads(body)["can_edit"] is False and json.loads(body)["share_path"] is None
    assert request(port, "GET", f"/sessions/{sid}?view={view}")[0] == 200
    assert_error(*request(port, "GET", f"/sessions/{other}?view={view}"), 401)
    assert_error(*request(port, "GET", f"/?view={view}"), 401)
    rename = json.dumps({"action": "rename_speaker", "session_id": sid, "speaker": "S1", "name": "x"}).encode()
    viewer = {"authorization": f"Bearer {view}", "content-type": "application/json"}
    assert_error(*request(port, "POST", "/api", rename, viewer), 401)


def test_start_session_links_the_page_on_the_bound_port(svc: LiveService) -> None:
    """The port is the OS's choice (port 0); the context is built once and stays as built."""
    started = start(svc)
    assert started["page_url"] == f"{svc.url}/sessions/{started['session_id']}"
    assert port_of(svc) != 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        svc.ctx.page_url = None  # type: ignore[misc]


def test_every_malformed_request_gets_a_structured_4xx(svc: LiveService) -> None:
    started = start(svc)
    sid = started["session_id"]
    port = port_of(svc)
    js = {"content-type": "application/json"}
    cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
        ("GET", "/api", b"", {}, 405),
        ("POST", "/api", b"", js, 400),
        ("POST", "/api", b"{nope", js, 400),
        ("POST", "/api", b"[1]", js, 400),
        ("POST", "/api", b'{"action": "explode"}', js, 400),
        ("POST", "/api", b"{}", {"content-type": "application/x-www-form-urlencoded"}, 415),
        ("GET", "/nothing", b"", {}, 404),
        ("GET", "/sessions/nope", b"", {}, 404),
        ("GET", "/sessions/..%2f/events", b"", {}, 404),
        ("GET", f"/sessions/{sid}/transcript?format=doc", b"", {}, 400),
        ("GET", f"/sessions/{sid}/audio/x", b"", {}, 400),
        ("GET", f"/sessions/{sid}/audio/3", b"", {}, 404),
        ("DELETE", f"/sessions/{sid}", b"", {}, 405),
        ("POST", f"/sessions/{sid}/whip", b"v=0", {"content-type": "application/sdp"}, 401),
        ("POST", f"/sessions/{sid}/whip", b"v=0", {"authorization": f"Bearer {started['stream_key']}"}, 415),
        ("DELETE", f"/sessions/{sid}/whip/nope", b"", {"authorization": "Bearer x"}, 404),
    ]
    for method, path, body, headers, code in cases:
        status, h, payload = request(port, method, path, body, headers)
        assert_error(status, h, payload, code)


def test_downloads_name_their_format(svc: LiveService) -> None:
    sid = start(svc)["session_id"]
    port = port_of(svc)
    for fmt, ctype in (
        ("text", "text/plain"),
        ("srt", "application/x-subrip"),
        ("vtt", "text/vtt"),
        ("json", "application/json"),
    ):
        status, h, _ = request(port, "GET", f"/sessions/{sid}/transcript?format={fmt}&download=1")
        assert status == 200 and h["content-type"].startswith(ctype)
        assert "attachment" in h["content-disposition"] and sid in h["content-disposition"]


def test_stop_ends_open_feeds(tmp_path: Path) -> None:
    service = LiveService(settings_for(tmp_path)).start()
    sid = start(service)["session_id"]
    port = port_of(service)
    done = threading.Event()

    def viewer() -> None:
        exchange(
            port, f"GET /sessions/{sid}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), 30, wait_for_close=True
        )
        done.set()

    threading.Thread(target=viewer, daemon=True).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    service.stop()
    assert done.wait(10) and time.monotonic() - t0 < 10


def test_keep_alive_responses_are_not_held_by_nagle(svc: LiveService) -> None:
    # The old server wrote headers and body separately without TCP_NODELAY: each keep-alive
    # response waited for the client's delayed ACK (~44 ms). asyncio sets TCP_NODELAY only on
    # sockets created with proto IPPROTO_TCP, so the accepted socket is checked, not assumed.
    with socket.create_connection(("127.0.0.1", port_of(svc)), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while not got.endswith(b'{"ok":true}'):
                got += sock.recv(4096)
        conns = list(svc.http.server.server_state.connections)
        nodelay = [
            c.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in conns
        ]
        assert nodelay and all(nodelay), nodelay

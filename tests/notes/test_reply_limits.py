"""A notes endpoint that misbehaves (issue 20 #4, #5): safe reasons, bounded replies, best-effort usage.

Before: ``fallback_reason`` (shown to viewers, and logged) held the endpoint URL with
its credentials (``cannot reach http://svc:SECRET@host/v1``) and up to 500
characters of the upstream error body; a 60 MB reply was read whole (about
140 MB more in the process), and a trickling server kept the abandoned worker
reading after the notes step had timed out; a valid notes reply with a
malformed ``usage`` was thrown away. Each endpoint here is a real HTTP server on
loopback, scripted per test, bounded in bytes and time.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contracts.logs import JsonFormatter, TextFormatter
from contracts.notes import MeetingNotes
from control.llm.generator import LlmNotesGenerator
from control.llm.openai_compat import MAX_REPLY_BYTES, OpenAICompatibleChat
from control.notes import FallbackNotesGenerator, OfflineNotesGenerator
from testkit.transcripts import NAMES, meeting_segments
from tests.test_notes import good_reply

SECRET = "S3cr3t-pw"
UPSTREAM_BODY = "upstream trace id=0xdeadbeef; internal host db-7.corp; token=abc123"

Handler = Callable[[BaseHTTPRequestHandler], None]


class Endpoint:
    """A scripted OpenAI-compatible endpoint on an ephemeral loopback port."""

    def __init__(self, respond: Handler) -> None:
        self.requests: list[dict[str, str]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.requests.append(dict(self.headers))
                respond(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _completion(content: str, usage: object) -> bytes:
    return json.dumps(
        {"choices": [{"message": {"content": content}, "finish_reason": "stop"}], "usage": usage}
    ).encode()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _generate(url: str, *, deadline: float = 20.0, timeout: float = 25.0) -> MeetingNotes:
    model = OpenAICompatibleChat(url, "m", context_tokens=8192)
    gen = FallbackNotesGenerator(LlmNotesGenerator(model, deadline=deadline), OfflineNotesGenerator(), timeout)
    return gen.generate(meeting_segments(), NAMES)


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as both formats write it."""
    return [f.format(r) for r in caplog.records for f in (TextFormatter(), JsonFormatter())]


@pytest.fixture
def free_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_an_unreachable_endpoint_with_credentials_in_its_url_shows_neither(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        notes = _generate(f"http://svc:{SECRET}@127.0.0.1:{free_port}/v1")
    assert notes.generator == "offline-extractive-v1"
    assert notes.fallback_reason == "openai:m: notes model unavailable: cannot reach the endpoint"
    lines = _log_lines(caplog)
    assert any(f"127.0.0.1:{free_port}/v1" in line for line in lines), lines  # the log keeps the detail
    assert not any(SECRET in line for line in lines), lines


def test_an_upstream_error_body_goes_to_the_log_not_the_notes(caplog: pytest.LogCaptureFixture) -> None:
    with Endpoint(lambda h: _send(h, 502, UPSTREAM_BODY.encode())) as ep, caplog.at_level(logging.WARNING):
        notes = _generate(f"http://127.0.0.1:{ep.port}/v1?api_key={SECRET}")
    assert notes.fallback_reason == "openai:m: notes model unavailable: HTTP 502"
    lines = _log_lines(caplog)
    assert any("deadbeef" in line for line in lines)
    assert not any(SECRET in line for line in lines), lines


def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    def respond(h: BaseHTTPRequestHandler) -> None:
        expected = "Basic " + base64.b64encode(f"svc:{SECRET}".encode()).decode()
        if h.headers.get("authorization") != expected:
            _send(h, 401, b"{}")
        else:
            _send(h, 200, _completion(good_reply(meeting_segments()), {"prompt_tokens": 900}))

    with Endpoint(respond) as ep:
        notes = _generate(f"http://svc:{SECRET}@127.0.0.1:{ep.port}/v1")
    assert notes.generator == "openai:m", notes.fallback_reason
    assert notes.usage is not None and notes.usage.input_tokens == 900


@pytest.mark.parametrize("usage", ["lots", {"prompt_tokens": "many", "completion_tokens": -5}, [1, 2], 7])
def test_a_valid_reply_with_a_malformed_usage_is_kept(usage: object) -> None:
    with Endpoint(lambda h: _send(h, 200, _completion(good_reply(meeting_segments()), usage))) as ep:
        notes = _generate(f"http://127.0.0.1:{ep.port}/v1")
    assert notes.generator == "openai:m" and notes.fallback_reason is None
    assert notes.usage is not None and notes.usage.input_tokens == 0 and notes.decisions


def test_a_60_mb_reply_is_not_buffered_whole() -> None:
    block = b" " * 65536
    sent = [0]

    def respond(h: BaseHTTPRequestHandler) -> None:
        # No content-length: the reply ends when the connection does, so only reading shows its size.
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.end_headers()
        try:
            h.wfile.write(b'{"choices": [{"message": {"content": "')
            for _ in range(60 * 16):  # 60 MiB
                h.wfile.write(block)
                sent[0] += len(block)
            h.wfile.write(b'"}}]}')
        except OSError:
            pass  # the client stopped reading

    with Endpoint(respond) as ep:
        tracemalloc.start()
        try:
            notes = _generate(f"http://127.0.0.1:{ep.port}/v1")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert notes.generator == "offline-extractive-v1"
    assert notes.fallback_reason == "openai:m: notes model unavailable: reply over 1024 KiB"
    assert peak < 8 * MAX_REPLY_BYTES, f"peak {peak / 2**20:.0f} MiB while reading the reply"
    assert sent[0] < 60 * 2**20, "the whole reply was read"


def test_the_abandoned_worker_stops_reading_at_the_deadline() -> None:
    stopped = threading.Event()

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.end_headers()
        try:
            for _ in range(600):  # one byte every 50 ms for at most 30 s
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            stopped.set()  # the client closed the connection

    with Endpoint(respond) as ep:
        # The model call has 1 s; the notes step gives up on it at 2 s and writes the offline notes.
        notes = _generate(f"http://127.0.0.1:{ep.port}/v1", deadline=1.0, timeout=2.0)
        assert notes.generator == "offline-extractive-v1"
        # The worker left behind closes the connection on its own, long before the trickle ends.
        assert stopped.wait(20), "the abandoned worker kept reading the trickle"


@pytest.mark.parametrize("declared", [str(60 * 2**20), "9" * 5000])
def test_a_declared_length_over_the_cap_is_refused_before_reading(declared: str) -> None:
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", declared)
        h.end_headers()
        h.wfile.write(b'{"choices": ')  # and nothing more: only the header can say how big it is

    with Endpoint(respond) as ep:
        notes = _generate(f"http://127.0.0.1:{ep.port}/v1", deadline=10.0, timeout=15.0)
    assert notes.fallback_reason == "openai:m: notes model unavailable: reply over 1024 KiB"

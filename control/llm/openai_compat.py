"""An OpenAI-compatible chat endpoint: what vLLM, Ollama, llama.cpp's servers and most gateways speak.

``POST {base_url}/chat/completions`` with ``temperature`` 0 and the reply
schema as ``response_format``. Servers differ in how they take a schema:
OpenAI, vLLM and Ollama take ``{"type": "json_schema", "json_schema": {...}}``;
llama-cpp-python's server takes ``{"type": "json_object", "schema": {...}}``
and refuses the other form (HTTP 500 naming ``response_format``). The first
form is tried; a refusal that names ``response_format`` switches this client
to the second for good.

Plain ``http.client``: one JSON POST needs no HTTP library in the Lambda bundle,
and it gives the socket, so the reply is read against the call's deadline and
up to :data:`MAX_REPLY_BYTES` (issue 20: a 60 MB reply was buffered whole, and a
trickling server kept an abandoned worker reading long after the notes step had
given up). Credentials in the URL (``http://user:pass@host/v1``) are sent as
HTTP Basic and never appear in a message; environment proxies are not used.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from typing import Any

from control.llm.chat import ChatReply, ChatRequest, ProviderError, token_count, unavailable

DEFAULT_CONTEXT_TOKENS = 8192
#: Largest reply read. A notes reply is a JSON object of at most a few thousand tokens
#: (``FLOWBOT_NOTES_MAX_OUTPUT_TOKENS``, 1,024 by default: about 4 KB); 1 MiB leaves room
#: for servers that add logprobs or echo the prompt, and bounds what one call can cost.
MAX_REPLY_BYTES = 1024 * 1024
#: Most of an error body kept for the log (never shown in the notes).
MAX_ERROR_BYTES = 4096
_READ_CHUNK = 64 * 1024


class OpenAICompatibleChat:
    """:class:`control.llm.chat.ChatModel` over an OpenAI-compatible ``/chat/completions``."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str = "", context_tokens: int = DEFAULT_CONTEXT_TOKENS
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("notes endpoint must be an http(s) URL with a host (FLOWBOT_NOTES_URL)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("notes endpoint has an invalid port (FLOWBOT_NOTES_URL)") from None
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._path = parts.path.rstrip("/")
        netloc = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        #: The endpoint as messages name it: no user info, no query.
        self.base_url = f"{parts.scheme}://{netloc}{f':{port}' if port else ''}{self._path}"
        self._basic = ""
        if parts.username is not None and not api_key:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self._basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.model = model
        self.api_key = api_key
        self.context_tokens = context_tokens
        self.name = f"openai:{model or 'default'}"
        self.schema_style = "json_schema"

    def _response_format(self, request: ChatRequest) -> dict[str, Any]:
        if self.schema_style == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
            }
        return {"type": "json_object", "schema": request.schema}

    def complete(self, request: ChatRequest, timeout: float) -> ChatReply:
        """See :class:`control.llm.chat.ChatModel`."""
        deadline = time.monotonic() + timeout
        try:
            data = self._post(request, deadline)
        except _FormatRejected:
            self.schema_style = "json_object"
            data = self._post(request, deadline)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                f"unexpected response shape: {json.dumps(data)[:200]}", unavailable("unexpected response shape")
            ) from None
        usage = data.get("usage")
        return ChatReply(
            text=str(text),
            input_tokens=token_count(usage, "prompt_tokens"),
            output_tokens=token_count(usage, "completion_tokens"),
            truncated=isinstance(choice, dict) and choice.get("finish_reason") == "length",
        )

    def _post(self, request: ChatRequest, deadline: float) -> dict[str, Any]:
        body = {
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "temperature": 0,
            "max_tokens": request.max_tokens,
            "response_format": self._response_format(request),
            "stream": False,
        }
        if self.model:
            body["model"] = self.model
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        elif self._basic:
            headers["authorization"] = f"Basic {self._basic}"
        status, payload = self._exchange(json.dumps(body).encode(), headers, deadline)
        if status >= 400:
            detail = payload.decode(errors="replace")
            # 400/422 from most servers; llama-cpp-python's answers its validation error with 500.
            if status in (400, 422, 500) and "response_format" in detail and self.schema_style == "json_schema":
                raise _FormatRejected(detail)
            raise ProviderError(f"HTTP {status} from {self.base_url}: {detail}", unavailable(f"HTTP {status}"))
        try:
            data = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderError(
                f"response is not JSON: {payload[:200]!r}", unavailable("response is not JSON")
            ) from None
        if not isinstance(data, dict):
            raise ProviderError("response is not a JSON object", unavailable("response is not a JSON object"))
        return data

    def _exchange(self, body: bytes, headers: dict[str, str], deadline: float) -> tuple[int, bytes]:
        """POST ``body``; (status, reply body), the body read up to its cap and by ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout()
        conn_type = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_type(self._host, self._port, timeout=left)
        resp: http.client.HTTPResponse | None = None
        try:
            conn.request("POST", f"{self._path}/chat/completions", body=body, headers=headers)
            sock = conn.sock  # kept: the response reads from it after the connection lets it go
            resp = conn.getresponse()
            limit = MAX_ERROR_BYTES if resp.status >= 400 else MAX_REPLY_BYTES
            declared = resp.getheader("content-length", "").strip()
            # ASCII digits of a bounded length: int() takes "²" and raises on 5,000 digits.
            too_long = declared.isascii() and declared.isdigit() and (len(declared) > 15 or int(declared) > limit)
            if resp.status < 400 and too_long:
                raise _too_large(int(declared[:16]))
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout()
                if sock is not None:
                    sock.settimeout(left)  # no single read outlives the deadline
                chunk = resp.read1(_READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                if resp.status >= 400:
                    return resp.status, b"".join(chunks)[:limit]
                raise _too_large(size)
            return resp.status, b"".join(chunks)
        except TimeoutError:
            raise self._timeout() from None
        except (OSError, http.client.HTTPException) as exc:
            raise ProviderError(
                f"cannot reach {self.base_url}: {exc}", unavailable("cannot reach the endpoint")
            ) from None
        finally:
            # The reader stops here, answered or not: the response holds the socket open too.
            if resp is not None:
                resp.close()
            conn.close()

    def _timeout(self) -> TimeoutError:
        return TimeoutError(f"no full answer from {self.base_url} by the call's deadline")


def _too_large(size: int) -> ProviderError:
    return ProviderError(
        f"reply of {size} bytes or more is over the {MAX_REPLY_BYTES}-byte limit",
        unavailable(f"reply over {MAX_REPLY_BYTES // 1024} KiB"),
    )


class _FormatRejected(Exception):
    """The server does not take OpenAI's json_schema response format."""

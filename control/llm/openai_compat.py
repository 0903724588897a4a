"""An OpenAI-compatible chat endpoint: what vLLM, Ollama, llama.cpp's servers and most gateways speak.

``POST {base_url}/chat/completions`` with ``temperature`` 0 and the reply
schema as ``response_format``. Servers differ in how they take a schema:
OpenAI, vLLM and Ollama take ``{"type": "json_schema", "json_schema": {...}}``;
llama-cpp-python's server takes ``{"type": "json_object", "schema": {...}}``
and refuses the other form (HTTP 500 naming ``response_format``). The first
form is tried; a refusal that names ``response_format`` switches this client
to the second for good.

Plain ``urllib``: one JSON POST needs no HTTP library in the Lambda bundle.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from control.llm.chat import ChatReply, ChatRequest, ProviderError

DEFAULT_CONTEXT_TOKENS = 8192


class OpenAICompatibleChat:
    """:class:`control.llm.chat.ChatModel` over an OpenAI-compatible ``/chat/completions``."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str = "", context_tokens: int = DEFAULT_CONTEXT_TOKENS
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"notes endpoint must be an http(s) URL, got {base_url!r} (FLOWBOT_NOTES_URL)")
        self.base_url = base_url.rstrip("/")
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
        try:
            data = self._post(request, timeout)
        except _FormatRejected:
            self.schema_style = "json_object"
            data = self._post(request, timeout)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(f"unexpected response shape: {json.dumps(data)[:200]}") from None
        return ChatReply(
            text=str(text),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            truncated=choice.get("finish_reason") == "length",
        )

    def _post(self, request: ChatRequest, timeout: float) -> dict[str, Any]:
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
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            # 400/422 from most servers; llama-cpp-python's answers its validation error with 500.
            if exc.code in (400, 422, 500) and "response_format" in detail and self.schema_style == "json_schema":
                raise _FormatRejected(detail) from None
            raise ProviderError(f"HTTP {exc.code} from {self.base_url}: {detail}") from None
        except TimeoutError:
            raise TimeoutError(f"no answer from {self.base_url} within {timeout:.0f} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"no answer from {self.base_url} within {timeout:.0f} s") from None
            raise ProviderError(f"cannot reach {self.base_url}: {exc.reason}") from None
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            raise ProviderError(f"response is not JSON: {payload[:200]!r}") from None
        if not isinstance(data, dict):
            raise ProviderError("response is not a JSON object")
        return data


class _FormatRejected(Exception):
    """The server does not take OpenAI's json_schema response format."""

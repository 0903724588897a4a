"""A Bedrock Converse emulator for tests: boto3's real call, answered by a real local model.

Neither LocalStack (community) nor moto 5.2.5 implement ``bedrock-runtime``
Converse (moto has only InvokeModel), so this small server speaks the Converse
REST protocol on 127.0.0.1: ``POST /model/{modelId}/converse``. It checks what
a real endpoint would reject -- the SigV4 credential scope (service
``bedrock``, the region), the model id, the request shape (system, one user
message, ``inferenceConfig.maxTokens``, a tool with a JSON input schema and a
``toolChoice`` naming it) -- and answers with a forced tool call whose input
the local GGUF model generated under that schema's grammar. Errors are sent
the way Bedrock sends them (``x-amzn-ErrorType`` header), so botocore parses
and retries them as it would in AWS.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from control.llm.chat import ChatModel, ChatRequest

_PATH = re.compile(r"^/model/([^/]+)/converse$")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


@dataclass
class ConverseEmulator:
    """Serves Converse for ``model_id`` in ``region`` with ``model`` generating the answers."""

    model: ChatModel
    model_id: str
    region: str = "us-east-1"
    #: Error code to answer every call with (e.g. "ThrottlingException"), or None.
    fail_with: str | None = None
    #: Answer a forced toolChoice with ValidationException (models without forced tool use).
    reject_tool_choice: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers, payload = emulator.handle(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {**headers, "content-type": "application/json", "content-length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ConverseEmulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        return status, {"x-amzn-ErrorType": code}, {"message": message}

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        m = _PATH.match(path)
        if not m:
            return self.error(404, "UnknownOperationException", f"no such operation: {path}")
        scope = _SCOPE.search({k.lower(): v for k, v in headers.items()}.get("authorization", ""))
        if not scope or scope.groups() != (self.region, "bedrock"):
            return self.error(403, "InvalidSignatureException", f"bad credential scope: {scope and scope.groups()}")
        if unquote(m.group(1)) != self.model_id:
            return self.error(404, "ResourceNotFoundException", f"model {unquote(m.group(1))} not found")
        req = json.loads(body)
        self.calls.append(req)
        if self.fail_with:
            return self.error(429 if self.fail_with == "ThrottlingException" else 400, self.fail_with, "emulated")
        try:
            system = "\n".join(b["text"] for b in req["system"])
            (message,) = req["messages"]
            assert message["role"] == "user"
            user = "".join(b["text"] for b in message["content"])
            max_tokens = int(req["inferenceConfig"]["maxTokens"])
            tool_config = req.get("toolConfig")
            if tool_config is not None:
                spec = tool_config["tools"][0]["toolSpec"]
                schema = spec["inputSchema"]["json"]
                if tool_config["toolChoice"] != {"tool": {"name": spec["name"]}}:
                    raise ValueError("toolChoice must name the tool")
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            return self.error(400, "ValidationException", f"malformed Converse request: {exc!r}")
        if tool_config is not None and self.reject_tool_choice:
            return self.error(400, "ValidationException", "This model doesn't support the toolChoice field.")
        if tool_config is None:
            schema = json.loads(system.rsplit("JSON schema: ", 1)[1])
        reply = self.model.complete(ChatRequest(system, user, "converse", schema, max_tokens), timeout=300)
        usage = {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens}
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
        content: list[dict[str, Any]]
        if tool_config is not None and not reply.truncated:
            tool_input = json.loads(reply.text)
            tool_use = {"toolUseId": f"tooluse_{len(self.calls)}", "name": spec["name"], "input": tool_input}
            content, stop = [{"toolUse": tool_use}], "tool_use"
        else:
            content, stop = [{"text": reply.text}], "max_tokens" if reply.truncated else "end_turn"
        return (
            200,
            {},
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1},
            },
        )

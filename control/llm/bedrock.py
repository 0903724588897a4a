"""Amazon Bedrock through the Converse API (``bedrock-runtime``), the notes provider in AWS mode.

The reply schema is given as the input schema of one tool, ``record_notes``,
and ``toolChoice`` forces the model to call it: Converse's way to get JSON of a
given shape from any model that supports tool use (Claude 3+, Nova, Mistral
Large). For a model that refuses a forced tool, the client switches to asking
for the JSON in plain text (the generator validates either the same way).

The Lambda role may call exactly one model (``bedrock:InvokeModel`` on that
foundation-model ARN; ``infra/terraform/modules/data/iam.tf``).
"""

from __future__ import annotations

import json
from typing import Any

from control.llm.chat import ChatReply, ChatRequest, ProviderError, token_count, unavailable

DEFAULT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
DEFAULT_CONTEXT_TOKENS = 8192
TOOL_NAME = "record_notes"


class BedrockChat:
    """:class:`control.llm.chat.ChatModel` over Bedrock Converse."""

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        read_timeout: float = 240.0,
        client: Any = None,
    ) -> None:
        self.model_id = model_id or DEFAULT_MODEL
        self.name = f"bedrock:{self.model_id}"
        self.context_tokens = context_tokens
        self.force_tool = True
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "bedrock-runtime",
                region_name=region,
                endpoint_url=endpoint_url or None,
                config=Config(
                    connect_timeout=10,
                    read_timeout=read_timeout,
                    retries={"total_max_attempts": 3, "mode": "adaptive"},
                ),
            )
        self.client = client

    def complete(self, request: ChatRequest, timeout: float) -> ChatReply:
        """See :class:`control.llm.chat.ChatModel` (``timeout`` is the client's read timeout)."""
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        try:
            try:
                response = self._converse(request)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                if self.force_tool and err.get("Code") == "ValidationException" and "tool" in err.get("Message", ""):
                    self.force_tool = False  # this model takes no forced tool: ask for plain JSON text
                    response = self._converse(request)
                else:
                    raise
        except ReadTimeoutError:
            raise TimeoutError("no answer within the read timeout") from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = _code(err.get("Code"))
            # The code is AWS's vocabulary; the message is the service's text: log only.
            raise ProviderError(f"{code}: {err.get('Message', exc)}", unavailable(code)) from None
        except BotoCoreError as exc:
            raise ProviderError(str(exc), unavailable(type(exc).__name__)) from None
        return _reply(response, self.name)

    def _converse(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "modelId": self.model_id,
            "system": [{"text": request.system}],
            "messages": [{"role": "user", "content": [{"text": request.user}]}],
            "inferenceConfig": {"maxTokens": request.max_tokens, "temperature": 0.0},
        }
        if self.force_tool:
            kwargs["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": TOOL_NAME,
                            "description": f"Record the {request.schema_name.replace('_', ' ')}.",
                            "inputSchema": {"json": dict(request.schema)},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": TOOL_NAME}},
            }
        else:
            kwargs["system"] = [
                {"text": request.system},
                {"text": "Reply with the JSON object only, matching this JSON schema: " + json.dumps(request.schema)},
            ]
        return dict(self.client.converse(**kwargs))


def _code(value: object) -> str:
    """An AWS error code as shown in the notes: a plain identifier, else ``error``."""
    text = value if isinstance(value, str) else ""
    return text if text.isidentifier() and len(text) <= 64 else "error"


def _reply(response: dict[str, Any], name: str) -> ChatReply:
    try:
        content = response["output"]["message"]["content"]
    except (KeyError, TypeError):
        raise ProviderError("Converse response has no output message") from None
    text = ""
    for block in content:
        if "toolUse" in block and block["toolUse"].get("name") == TOOL_NAME:
            text = json.dumps(block["toolUse"].get("input"))
            break
        if "text" in block:
            text += block["text"]
    usage = response.get("usage")
    return ChatReply(
        text=text,
        input_tokens=token_count(usage, "inputTokens"),
        output_tokens=token_count(usage, "outputTokens"),
        truncated=response.get("stopReason") == "max_tokens",
    )

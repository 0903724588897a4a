"""The one boundary every notes model sits behind: a chat call that must answer in JSON.

A provider (:mod:`control.llm.openai_compat`, :mod:`control.llm.bedrock`,
:mod:`control.llm.local`) turns a :class:`ChatRequest` into its own API call,
asks the model to follow ``schema`` the strongest way that API offers
(constrained decoding, JSON-schema response format, or a forced tool call),
and hands back the raw reply text with token counts. Checking the reply is not
the provider's job: :mod:`control.llm.generator` validates every reply the same
way, whichever model wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from control.notes import NotesError

#: How the notes name a model that could not be asked or did not answer: ``unavailable("HTTP 502")``.
UNAVAILABLE = "notes model unavailable"


def unavailable(what: str) -> str:
    """The public reason for a provider failure: :data:`UNAVAILABLE` and a short, fixed ``what``."""
    return f"{UNAVAILABLE}: {what}"


class ProviderError(NotesError, RuntimeError):
    """The model could not be asked or did not answer.

    ``detail`` (the message) is for the log; ``public`` is a short reason safe to show
    (:func:`unavailable`), by default the bare :data:`UNAVAILABLE`.
    """

    def __init__(self, detail: str, public: str = UNAVAILABLE) -> None:
        super().__init__(detail, public)


def token_count(usage: object, key: str) -> int:
    """A token count from a reply's ``usage``: best effort, 0 when missing or malformed.

    What a call cost is bookkeeping: a reply whose notes are valid is kept whatever
    its ``usage`` says.
    """
    value = usage.get(key) if isinstance(usage, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**31:
        return 0
    return int(value)


@dataclass(frozen=True)
class ChatRequest:
    """One call: instructions, the user turn, and the JSON schema the answer must follow."""

    system: str
    user: str
    schema_name: str
    schema: Mapping[str, Any]
    max_tokens: int


@dataclass(frozen=True)
class ChatReply:
    """The model's answer: text that should be a JSON object, and what it cost."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    #: The model stopped at ``max_tokens`` (the JSON is then usually cut off).
    truncated: bool = False


class ChatModel(Protocol):
    """A chat model behind one provider."""

    #: ``provider:model`` as recorded in the notes (e.g. ``bedrock:anthropic.claude-3-haiku-20240307-v1:0``).
    name: str
    #: Tokens the model reads and writes in one call (prompt + transcript chunk + answer).
    context_tokens: int

    def complete(self, request: ChatRequest, timeout: float) -> ChatReply:
        """Ask once; raise :class:`ProviderError` (or ``TimeoutError``) when no answer comes within ``timeout`` s."""

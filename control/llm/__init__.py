"""Language-model notes providers behind :class:`control.notes.NotesGenerator`.

``FLOWBOT_NOTES_PROVIDER`` picks one:

- ``offline`` (default): the extractive notes of :mod:`control.notes`, no model.
- ``bedrock``: Amazon Bedrock Converse (:mod:`control.llm.bedrock`), the AWS-mode provider.
- ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (:mod:`control.llm.openai_compat`).
- ``llama-cpp``: a GGUF model in this process (:mod:`control.llm.local`).

Every provider is wrapped in :class:`control.notes.FallbackNotesGenerator`: a
failure, a timeout or an invalid reply gives the offline notes, with the reason
recorded in the notes. A provider that cannot even be set up (no such model
file, package missing) is reported at start-up and then falls back the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from contracts.notes import MeetingNotes
from contracts.segments import TranscriptSegment
from contracts.settings import NotesProvider, Settings
from control.llm.chat import ChatModel, ChatReply, ChatRequest, ProviderError, unavailable
from control.llm.generator import LlmNotesGenerator
from control.notes import FallbackNotesGenerator, NotesGenerator, OfflineNotesGenerator

__all__ = [
    "ChatModel",
    "ChatReply",
    "ChatRequest",
    "LlmNotesGenerator",
    "ProviderError",
    "chat_model",
    "notes_generator",
]

log = logging.getLogger(__name__)

#: Time kept back from FLOWBOT_NOTES_TIMEOUT_SECONDS for the fallback and the store write.
FALLBACK_GRACE_SECONDS = 5.0


def chat_model(settings: Settings) -> ChatModel:
    """The chat model ``settings`` configure (ValueError/ProviderError/ArtefactError when it cannot be set up)."""
    provider = settings.notes_provider
    context = settings.notes_context_tokens
    if provider == NotesProvider.BEDROCK:
        from control.llm.bedrock import BedrockChat

        return BedrockChat(
            settings.notes_model,
            region=settings.notes_region or settings.aws_region,
            endpoint_url=settings.bedrock_endpoint,
            context_tokens=context,
            read_timeout=settings.notes_timeout_seconds,
        )
    if provider == NotesProvider.OPENAI:
        from control.llm.openai_compat import OpenAICompatibleChat

        if not settings.notes_url:
            raise ValueError("FLOWBOT_NOTES_PROVIDER=openai needs FLOWBOT_NOTES_URL (e.g. http://127.0.0.1:8000/v1)")
        return OpenAICompatibleChat(
            settings.notes_url, settings.notes_model, api_key=settings.notes_api_key, context_tokens=context
        )
    if provider == NotesProvider.LLAMA_CPP:
        from artefacts import BUNDLED, NOTES_QWEN, Kind, bundled, locate
        from control.llm.local import LlamaCppChat

        spec = settings.notes_model or BUNDLED + NOTES_QWEN.short
        if spec.startswith(BUNDLED):
            model = bundled(Kind.NOTES, spec.removeprefix(BUNDLED) or NOTES_QWEN.short)
            path = locate(model, settings) / model.files[0].name
        else:
            path = Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"FLOWBOT_NOTES_MODEL={spec!r}: no such GGUF file")
        return LlamaCppChat(path, context_tokens=context, threads=settings.cpu_threads)
    raise ValueError(f"unknown notes provider {provider!r}")


class _Unavailable:
    """A provider that could not be set up: every call falls back, with the set-up error as the reason."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        raise ProviderError(self.reason, unavailable("not set up (see the server log)"))


def notes_generator(settings: Settings) -> NotesGenerator:
    """The notes generator ``settings`` configure, with the offline notes as its fallback."""
    offline = OfflineNotesGenerator()
    if settings.notes_provider == NotesProvider.OFFLINE:
        return offline
    primary: NotesGenerator
    try:
        primary = LlmNotesGenerator(
            chat_model(settings),
            max_output_tokens=settings.notes_max_output_tokens,
            deadline=max(1.0, settings.notes_timeout_seconds - FALLBACK_GRACE_SECONDS),
        )
    except Exception as exc:  # any set-up failure: report now, fall back per meeting
        # The error may name a path or the endpoint: the log has it, the notes say "not set up".
        log.error("notes provider not available", extra={"provider": settings.notes_provider, "error": str(exc)})
        # Named as the provider would name itself: a model file by its stem, never its path.
        model = settings.notes_model or "default"
        if settings.notes_provider == NotesProvider.LLAMA_CPP:
            model = Path(model).stem
        name = f"{settings.notes_provider}:{model}"
        primary = _Unavailable(name, f"not available: {exc}")
    return FallbackNotesGenerator(primary, offline, timeout=settings.notes_timeout_seconds)

"""A local GGUF model through llama-cpp-python, in this process: notes with no server and no network.

The reply schema becomes a llama.cpp grammar (``response_format`` with a
``schema``), so the model can only emit JSON of the asked shape: a small model
may write poor notes, but not another format. Generation is streamed so the
caller's time limit can stop it between tokens (the reply is then marked
truncated and the generator falls back).

The model file is a path, or ``bundled:NAME`` installed at setup time
(:mod:`artefacts`); nothing is downloaded here.
"""

from __future__ import annotations

import atexit
import threading
import time
from pathlib import Path
from typing import Any

from contracts.parts import NOTES
from control.llm.chat import ChatReply, ChatRequest, ProviderError, unavailable

_cache: dict[tuple[str, int, int], Any] = {}
_cache_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    # Free the models before the interpreter tears down llama_cpp's module globals
    # (Llama.__del__ at exit otherwise prints a TypeError traceback).
    with _cache_lock:
        for llm in _cache.values():
            llm.close()
        _cache.clear()


def load_llama(path: Path, context_tokens: int, threads: int) -> Any:
    """One ``llama_cpp.Llama`` per (file, context, threads) per process (loading takes seconds)."""
    key = (str(path), context_tokens, threads)
    with _cache_lock:
        if key not in _cache:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ProviderError(
                    NOTES.missing("FLOWBOT_NOTES_PROVIDER=llama-cpp"), unavailable("llama-cpp-python is not installed")
                ) from exc
            if not path.is_file():
                raise ProviderError(f"notes model file not found: {path}", unavailable("model file not found"))
            _cache[key] = Llama(
                model_path=str(path),
                n_ctx=context_tokens,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
                seed=0,
            )
        return _cache[key]


class LlamaCppChat:
    """:class:`control.llm.chat.ChatModel` over a GGUF file with llama-cpp-python."""

    def __init__(self, path: Path, *, context_tokens: int = 8192, threads: int = 2) -> None:
        self.path = path
        self.context_tokens = context_tokens
        self.threads = threads
        self.name = f"llama-cpp:{path.stem}"
        self._lock = threading.Lock()  # one llama context: one generation at a time

    def complete(self, request: ChatRequest, timeout: float) -> ChatReply:
        """See :class:`control.llm.chat.ChatModel`."""
        stop_at = time.monotonic() + timeout
        llm = load_llama(self.path, self.context_tokens, self.threads)
        with self._lock:
            prompt_tokens = len(llm.tokenize((request.system + "\n" + request.user).encode(), add_bos=True))
            if prompt_tokens + request.max_tokens > self.context_tokens:
                raise ProviderError(
                    f"prompt of {prompt_tokens} tokens + {request.max_tokens} output "
                    f"exceeds the {self.context_tokens}-token context",
                    unavailable("prompt longer than the model's context"),
                )
            pieces: list[str] = []
            finish = None
            out_tokens = 0
            stream = llm.create_chat_completion(
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user},
                ],
                response_format={"type": "json_object", "schema": dict(request.schema)},
                temperature=0.0,
                # Greedy decoding of a small model loops ("x, x, x, ..."); a mild penalty breaks it.
                repeat_penalty=1.1,
                max_tokens=request.max_tokens,
                seed=0,
                stream=True,
            )
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        pieces.append(piece)
                        out_tokens += 1
                    finish = choice.get("finish_reason") or finish
                    if time.monotonic() > stop_at:
                        raise TimeoutError(f"generation passed its {timeout:.0f} s limit")
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # stops llama.cpp between tokens
        return ChatReply(
            text="".join(pieces),
            input_tokens=prompt_tokens,
            output_tokens=out_tokens,
            truncated=finish == "length",
        )

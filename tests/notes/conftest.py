"""Notes-provider fixtures: the bundled GGUF model, in-process and behind llama-cpp-python's server.

Both come from ``scripts/setup.d/70-notes.sh``. Missing prerequisites skip the
tests on a developer machine and fail them in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from artefacts import NOTES_QWEN, ArtefactError, locate
from control.llm.local import LlamaCppChat
from testkit.llama_server import llama_server as testkit_llama_server

#: Context used in these tests: the flite meeting (~1,000 tokens) fits in one call.
CONTEXT = 4096


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"notes test prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The bundled Qwen2.5-Coder-0.5B-Instruct GGUF (installed at setup time)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        _missing("llama-cpp-python not installed; run scripts/setup.d/70-notes.sh")
    try:
        return locate(NOTES_QWEN) / NOTES_QWEN.files[0].name
    except ArtefactError as exc:
        _missing(str(exc))
        raise


@pytest.fixture(scope="session")
def local_model(gguf: Path) -> LlamaCppChat:
    """The bundled model in this process."""
    return LlamaCppChat(gguf, context_tokens=CONTEXT, threads=2)


@pytest.fixture(scope="session")
def llama_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """llama-cpp-python's OpenAI-compatible server with the bundled model: (base URL, API key)."""
    key = "test-key-" + os.urandom(4).hex()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with testkit_llama_server(gguf, CONTEXT, log, api_key=key) as url:
        yield url, key

"""Notes-provider fixtures: the bundled GGUF model, in-process and behind llama-cpp-python's server.

Both come from ``scripts/setup.d/70-notes.sh``. Missing prerequisites skip the
tests on a developer machine and fail them in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from artefacts import NOTES_QWEN, ArtefactError, locate
from control.llm.local import LlamaCppChat
from testkit.net import free_port

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
    port = free_port()
    key = "test-key-" + os.urandom(4).hex()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        args = ["--model", str(gguf), "--model_alias", "qwen", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--n_ctx", str(CONTEXT), "--n_threads", "2", "--api_key", key, "--logits_all", "false"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", *args, "--verbose", "false"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                req = urllib.request.Request(f"{url}/models", headers={"authorization": f"Bearer {key}"})
                with urllib.request.urlopen(req, timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

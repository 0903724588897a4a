"""Setup writes the bytecode of what the diarizer imports, even under PYTHONDONTWRITEBYTECODE (issue 22: cost).

scripts/setup installs with ``pip --no-compile``; on a box that sets
``PYTHONDONTWRITEBYTECODE=1`` every ``flowbot transcribe`` then compiled torch,
lightning and pyannote from source (15.7-17.8 CPU s of imports against 4.9-5.8
from bytecode, docs/diarization.md round 27). ``python -m processor.pyannote_diarizer
bytecode`` (run by scripts/setup.d/20-diarization.sh) writes it once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bytecode_command_writes_lightning_and_pyannote_under_dontwritebytecode(tmp_path: Path) -> None:
    # The prefix keeps the shared venv unwritten; the command must write there all the same.
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(tmp_path))
    env["PYANNOTE_METRICS_ENABLED"] = "false"
    proc = subprocess.run(
        [sys.executable, "-m", "processor.pyannote_diarizer", "bytecode"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pyc")}
    for module in (
        "pyannote/audio/core/model",
        "pyannote/audio/pipelines/speaker_diarization",
        "lightning/fabric/wrappers",
    ):
        folder, name = module.rsplit("/", 1)
        assert any(f"/{folder}/{name}.cpython-" in f"/{w}" for w in written), module
    assert any("/torch/_dynamo/" in f"/{w}" for w in written)

"""pyannote.audio's real recording ``sample.wav`` (30 s telephone call, 2 speakers) and its reference."""

from __future__ import annotations

import wave
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from processor.rttm import read_rttm


def sample_folder() -> Path:
    """``pyannote/audio/sample`` of the installed package."""
    spec = find_spec("pyannote.audio")
    assert spec is not None and spec.submodule_search_locations, "pyannote.audio is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


def pyannote_sample() -> tuple[np.ndarray, tuple[tuple[float, float, str], ...]]:
    """float32 16 kHz samples and the (start, end, speaker) turns of ``sample.rttm``."""
    folder = sample_folder()
    with wave.open(str(folder / "sample.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    turns = tuple((t.start, t.end, t.speaker) for t in read_rttm(folder / "sample.rttm"))
    return pcm.astype(np.float32) / 32768.0, turns

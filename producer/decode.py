"""Decode any audio PyAV can open into 16 kHz mono s16 PCM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from contracts.frames import SAMPLE_RATE


class DecodeError(RuntimeError):
    """The input has no decodable audio."""


def pcm_chunks(container: Any) -> Iterator[np.ndarray]:
    """Yield int16 mono 16 kHz chunks from an open PyAV input container's first audio stream."""
    if not container.streams.audio:
        raise DecodeError("input has no audio stream")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1).astype(np.int16, copy=False)


def decode_file(path: str) -> Iterator[np.ndarray]:
    """Yield PCM chunks of a file (any format PyAV/FFmpeg decodes)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DecodeError(f"cannot open {path}: {exc}") from exc
    with container:
        yield from pcm_chunks(container)


def read_pcm(path: str) -> np.ndarray:
    """A whole file as one int16 array (tests, benchmarks and the windowing reference)."""
    chunks = list(decode_file(path))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

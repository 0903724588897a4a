"""Final ASR before interim ASR: a gate the engine's transcriber holds while a final pass runs.

The interim worker (:mod:`processor.interim`) skips a due pass while the gate is
busy, so a final pass never waits behind a caption pass on a 2-core machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from processor.asr import AsrResult, Transcriber
from processor.first_pass import FirstPasses
from processor.vad import Spans


class FinalGate:
    """Counts final passes running or waiting for the model, so interim work can yield."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        #: A cut window's final ASR waits for the next window's first interim pass.
        self.first_passes = FirstPasses()

    @contextmanager
    def final(self) -> Iterator[None]:
        """Mark a final pass (ASR or diarization) for the duration of the block."""
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    @property
    def busy(self) -> bool:
        """True while any final pass runs or waits."""
        return self._active > 0


class GatedTranscriber(Transcriber):
    """The engine's transcriber, marking each call as final work on a gate."""

    def __init__(self, inner: Transcriber, gate: FinalGate) -> None:
        self.inner = inner
        self.gate = gate

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """Delegate under the gate (the gate is entered before waiting for the model)."""
        with self.gate.final():
            return self.inner.transcribe(audio, beam_size=beam_size, initial_prompt=initial_prompt, speech=speech)

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Sequence[Spans] | None = None,
    ) -> list[AsrResult]:
        """Delegate under the gate, keeping the inner batching."""
        with self.gate.final():
            return self.inner.transcribe_batch(
                audios, beam_size=beam_size, initial_prompt=initial_prompt, speech=speech
            )

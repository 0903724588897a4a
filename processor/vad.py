"""Voice activity, computed once per window and read many ways.

Silero VAD (shipped inside faster-whisper) gives a speech probability per 32 ms
frame; every "where is speech" question is a threshold pass over those
probabilities with some minimum pause and padding. Before, a window ran the
network up to five times: once per pause length the cut tried (300, 200,
150 ms), once for "is there speech at all" and once inside faster-whisper.
:class:`SpeechMap` runs it once over the buffer head a window is cut from and
answers all of them (ASR hears the window's 1 s of left context whole); the thresholding is faster-whisper's
(``faster_whisper.vad.get_speech_timestamps``) for the options flowbot uses
(no minimum speech length, no maximum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Silero's frame, in samples at 16 kHz.
FRAME = 512
#: faster-whisper's defaults: a frame is speech at 0.5, speech ends below 0.35.
THRESHOLD = 0.5
NEG_THRESHOLD = THRESHOLD - 0.15

Spans = list[tuple[int, int]]


@dataclass(frozen=True)
class SpeechMap:
    """Silero speech probabilities of one stretch of float32 16 kHz audio, one per frame."""

    probs: np.ndarray
    samples: int

    @classmethod
    def of(cls, audio: np.ndarray) -> SpeechMap:
        """Run the network once over ``audio`` (padded as faster-whisper pads it)."""
        if len(audio) == 0:
            return cls(np.zeros(0, np.float32), 0)
        return cls(_probs(np.pad(audio, (0, FRAME - len(audio) % FRAME))), len(audio))

    def spans(self, min_silence_ms: int = 300, pad_ms: int = 100, lo: int = 0, hi: int | None = None) -> Spans:
        """Speech (start, end) spans of ``audio[lo:hi]``, relative to ``lo``.

        The same answer as faster-whisper's ``get_speech_timestamps`` on that slice
        with ``min_silence_duration_ms`` and ``speech_pad_ms``, except that the
        network heard the audio before ``lo`` too.
        """
        hi = self.samples if hi is None else min(hi, self.samples)
        if hi <= lo:
            return []
        first = lo // FRAME
        base = first * FRAME - lo
        raw = _speeches(self.probs[first : -(-hi // FRAME)], base, min_silence_ms * 16, hi - lo)
        return _padded(raw, pad_ms * 16, hi - lo)

    def share(self, lo: int = 0, hi: int | None = None) -> float:
        """The share of the frames over ``audio[lo:hi]`` that are speech (at :data:`THRESHOLD`)."""
        hi = self.samples if hi is None else min(hi, self.samples)
        probs = self.probs[lo // FRAME : -(-hi // FRAME)] if hi > lo else self.probs[:0]
        return float((probs >= THRESHOLD).mean()) if len(probs) else 0.0

    def has_speech(self, lo: int = 0, hi: int | None = None, min_silence_ms: int = 300) -> bool:
        """Is there any speech in ``audio[lo:hi]``?"""
        return bool(self.spans(min_silence_ms, 100, lo, hi))


def _probs(audio: np.ndarray) -> np.ndarray:
    """One network pass over ``audio`` (a whole number of frames): a probability per frame."""
    from faster_whisper.vad import get_vad_model

    return np.asarray(get_vad_model()(audio)).reshape(-1)


def _speeches(probs: np.ndarray, base: int, min_silence: int, length: int) -> Spans:
    """Unpadded speech spans: faster-whisper's trigger loop (``base``: sample of frame 0)."""
    out: Spans = []
    start: int | None = None
    temp_end = 0
    for i, p in enumerate(probs):
        pos = base + FRAME * i
        if p >= THRESHOLD and temp_end:
            temp_end = 0
        if p >= THRESHOLD and start is None:
            start = max(0, pos)
            continue
        if p < NEG_THRESHOLD and start is not None:
            if not temp_end:
                temp_end = pos
            if pos - temp_end < min_silence:
                continue
            if temp_end > start:
                out.append((start, temp_end))
            start, temp_end = None, 0
    if start is not None and length > start:
        out.append((start, length))
    return out


def _padded(spans: Spans, pad: int, length: int) -> Spans:
    """Pad each span by ``pad`` samples; a shorter gap is shared half and half (faster-whisper's rule)."""
    out = [list(s) for s in spans]
    for i, span in enumerate(out):
        if i == 0:
            span[0] = max(0, span[0] - pad)
        if i + 1 < len(out):
            gap = out[i + 1][0] - span[1]
            if gap < 2 * pad:
                span[1] += gap // 2
                out[i + 1][0] = max(0, out[i + 1][0] - gap // 2)
            else:
                span[1] = min(length, span[1] + pad)
                out[i + 1][0] = max(0, out[i + 1][0] - pad)
        else:
            span[1] = min(length, span[1] + pad)
    return [(int(a), int(b)) for a, b in out]

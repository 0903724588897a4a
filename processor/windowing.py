"""Where to close a window: at the last silence before the window limit.

Cutting blindly every 30 s splits words; Whisper then drops or garbles them
(measured here: base lost a 34-word span, WER 17.4 % vs 2.4 % when cut at the
last silence). So the cut goes in the middle of the last pause that Silero VAD
(shipped inside faster-whisper) finds between ``min_seconds`` and
``max_seconds``; only when nobody paused at all is the window cut at its
quietest 20 ms near the limit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from contracts.frames import SAMPLE_RATE


@dataclass(frozen=True)
class WindowPolicy:
    """How long windows may get and what counts as a pause."""

    max_seconds: float = 30.0
    min_seconds: float = 15.0
    min_silence_ms: int = 300

    @property
    def max_samples(self) -> int:
        """Window limit in samples."""
        return int(self.max_seconds * SAMPLE_RATE)

    @property
    def min_samples(self) -> int:
        """Earliest cut in samples."""
        return int(self.min_seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class Cut:
    """A chosen cut: sample index into the buffer, and how it was found."""

    at: int
    reason: str  # "silence", "no-speech" or "forced"


def speech_spans(audio: np.ndarray, min_silence_ms: int = 300) -> list[tuple[int, int]]:
    """Speech (start, end) sample spans of float32 16 kHz audio, by Silero VAD."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=100)
    return [(int(c["start"]), int(c["end"])) for c in get_speech_timestamps(audio, opts)]


def choose_cut(audio: np.ndarray, policy: WindowPolicy) -> Cut:
    """Pick the cut for a buffer holding at least ``policy.max_samples`` samples.

    ``audio`` is float32 in [-1, 1]; only its first ``max_samples`` matter.
    """
    limit = min(len(audio), policy.max_samples)
    head = audio[:limit]
    spans = speech_spans(head, policy.min_silence_ms)
    if not spans:
        return Cut(limit, "no-speech")
    # Silent tail after the last speech: cut in it (keeps the next window's start clean).
    candidates: list[int] = []
    for (_, end_a), (start_b, _) in itertools.pairwise(spans):
        candidates.append((end_a + start_b) // 2)
    last_end = spans[-1][1]
    if limit - last_end >= policy.min_silence_ms * SAMPLE_RATE // 1000:
        candidates.append((last_end + limit) // 2)
    good = [c for c in candidates if policy.min_samples <= c <= limit]
    if good:
        return Cut(max(good), "silence")
    return Cut(_quietest(head, limit), "forced")


def _quietest(audio: np.ndarray, limit: int) -> int:
    """Quietest 20 ms frame in the last 2 s before ``limit``."""
    frame = SAMPLE_RATE // 50
    lo = max(0, limit - 2 * SAMPLE_RATE)
    seg = audio[lo:limit]
    n = len(seg) // frame
    if n == 0:
        return limit
    energy = (seg[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    return lo + int(np.argmin(energy)) * frame + frame // 2


def has_speech(audio: np.ndarray, min_silence_ms: int = 300) -> bool:
    """True if VAD finds any speech (a silent tail needs no ASR pass)."""
    return len(audio) > 0 and bool(speech_spans(audio, min_silence_ms))


def to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1]."""
    return pcm.astype(np.float32) / 32768.0

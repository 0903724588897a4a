"""Where to close a window, and how much of it to commit.

Cutting blindly every 30 s splits words; Whisper then drops or garbles them
(measured here: base lost a 34-word span, WER 17.4 % vs 2.4 % when cut at the
last silence). So the cut goes in the middle of the last pause that Silero VAD
(shipped inside faster-whisper) finds between ``min_seconds`` and
``max_seconds`` and that is quiet in fact (:data:`PAUSE_DB_BELOW_SPEECH`),
trying shorter pauses (``fallback_silence_ms``) before giving up on pauses.

Real conversations often have none: in pyannote's telephone sample VAD finds
no 300 ms pause for 22 s, and a cut forced into running speech cost words at
the join (Whisper drops the half-word before the cut and the fragment after
it). A forced cut is therefore only where the ASR input ends: the window is
committed up to :func:`commit_point`, after the last recognised word that ends
at least ``carry_margin_seconds`` before the cut, and the audio after it is
carried into the next window and transcribed there (the way faster-whisper's
own sequential decoding seeks to the last complete segment). Every window
after the first also hears ``context_seconds`` of the audio before it, whose
words are dropped: Whisper drops or garbles the first words of audio that
starts abruptly.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from contracts.frames import SAMPLE_RATE
from processor.vad import SpeechMap

#: What Whisper's encoder hears in one pass.
ASR_INPUT_SECONDS = 30.0


@dataclass(frozen=True)
class WindowPolicy:
    """How long windows may get and what counts as a pause."""

    max_seconds: float = 30.0
    min_seconds: float = 15.0
    min_silence_ms: int = 300
    #: Shorter pauses tried, longest first, before a cut is forced. None goes below
    #: 150 ms: shorter "pauses" are mostly stop closures inside words.
    fallback_silence_ms: tuple[int, ...] = (200, 150)
    #: After a forced cut, words ending this close to it are not committed but
    #: carried into the next window (Whisper's last words before an abrupt end
    #: are the unreliable ones).
    carry_margin_seconds: float = 1.0
    #: Audio before a window's start that ASR hears as left context; its words
    #: belong to the previous window and are dropped. Whisper garbles or drops the
    #: first words of audio that starts abruptly: on the real-speech set, 1 s of
    #: context brought windowed WER from 16-17 % to 10-13 % (bench/quality.py).
    context_seconds: float = 1.0

    @property
    def context_samples(self) -> int:
        """Left context in samples."""
        return int(self.context_seconds * SAMPLE_RATE)

    @property
    def silence_thresholds_ms(self) -> tuple[int, ...]:
        """Pause lengths tried for a cut, longest first."""
        return (self.min_silence_ms, *(ms for ms in self.fallback_silence_ms if ms < self.min_silence_ms))

    @property
    def max_samples(self) -> int:
        """Window limit in samples."""
        return int(self.max_seconds * SAMPLE_RATE)

    @property
    def min_samples(self) -> int:
        """Earliest cut in samples."""
        return int(self.min_seconds * SAMPLE_RATE)


class CutReason(enum.StrEnum):
    """How a cut was found (the engine counts each as ``cut_<value>``)."""

    #: A pause of ``min_silence_ms``.
    SILENCE = "silence"
    #: A shorter fallback pause.
    PAUSE = "pause"
    #: Nothing to transcribe before the limit.
    NO_SPEECH = "no-speech"
    #: No pause at all: cut inside speech, the tail is carried over.
    FORCED = "forced"


@dataclass(frozen=True)
class Cut:
    """A chosen cut: sample index into the buffer, and how it was found."""

    at: int
    reason: CutReason

    @property
    def carries(self) -> bool:
        """True when the cut is inside speech, so its tail must be carried over."""
        return self.reason == CutReason.FORCED


@dataclass(frozen=True)
class PlannedWindow:
    """A window to cut off the front of a session buffer (see :func:`plan_windows`)."""

    #: Where it starts in the buffer, and its length.
    at: int
    samples: int
    #: How the cut was found; None for the buffer's rest (no cut: the stream ended or closed).
    reason: CutReason | None
    #: The audio just before it, int16 (``context_seconds`` at most).
    context: np.ndarray
    #: VAD of the buffer from ``at`` (up to the window limit): the window's one VAD pass.
    speech: SpeechMap

    @property
    def carries(self) -> bool:
        """Cut inside speech: where the next window starts depends on this one's words."""
        return self.reason == CutReason.FORCED


def plan_windows(
    buffer: np.ndarray, context: np.ndarray, policy: WindowPolicy, *, rest: bool, most: int = 1
) -> list[PlannedWindow]:
    """The next windows to cut off ``buffer`` (int16), at most ``most`` of them.

    A window is cut while more than ``max_samples`` is left, at
    :func:`choose_cut`'s cut, so the cuts do not depend on ``most``; with
    ``rest``, what is left under the limit is the last window. A cut inside
    speech ends the plan: where the next window starts depends on that window's
    transcript. VAD runs once per window, over the buffer head it is cut from.
    """
    history = np.concatenate([context, buffer])
    lead, pos = len(context), 0
    plans: list[PlannedWindow] = []
    while len(plans) < max(1, most) and pos < len(buffer):
        left = len(buffer) - pos
        ctx = history[max(0, lead + pos - policy.context_samples) : lead + pos]
        limit = policy.max_samples
        if left <= limit and not rest:
            break
        head = buffer[pos : pos + limit]
        speech = SpeechMap.of(to_float(head))
        if left <= limit:
            plans.append(PlannedWindow(pos, left, None, ctx, speech))
            break
        cut = choose_cut(to_float(head), policy, speech)
        plans.append(PlannedWindow(pos, cut.at, cut.reason, ctx, speech))
        pos += cut.at
        if cut.carries:
            break
    return plans


def speech_spans(audio: np.ndarray, min_silence_ms: int = 300) -> list[tuple[int, int]]:
    """Speech (start, end) sample spans of float32 16 kHz audio, by Silero VAD."""
    return SpeechMap.of(audio).spans(min_silence_ms, 100)


def choose_cut(audio: np.ndarray, policy: WindowPolicy, speech: SpeechMap | None = None, lo: int = 0) -> Cut:
    """Pick the cut for a buffer holding at least ``policy.max_samples`` samples.

    ``audio`` is float32 in [-1, 1]; only its first ``max_samples`` matter.
    ``speech`` is the VAD of the buffer already run (``audio`` starts at its
    sample ``lo``); without it VAD runs here.
    """
    limit = min(len(audio), policy.max_samples)
    head = audio[:limit]
    if speech is None:
        speech, lo = SpeechMap.of(head), 0
    silent = quiet_test(head)
    for ms in policy.silence_thresholds_ms:
        spans = speech.spans(ms, 100, lo, lo + limit)
        if not spans:
            return Cut(limit, CutReason.NO_SPEECH)
        # Silent tail after the last speech: cut in it (keeps the next window's start clean).
        candidates: list[int] = []
        for (_, end_a), (start_b, _) in itertools.pairwise(spans):
            candidates.append((end_a + start_b) // 2)
        last_end = spans[-1][1]
        if limit - last_end >= ms * SAMPLE_RATE // 1000:
            candidates.append((last_end + limit) // 2)
        good = [c for c in candidates if policy.min_samples <= c <= limit and silent(c)]
        if good:
            return Cut(max(good), CutReason.SILENCE if ms == policy.min_silence_ms else CutReason.PAUSE)
    return Cut(_quietest(head, max(0, limit - 2 * SAMPLE_RATE), limit), CutReason.FORCED)


#: A pause the VAD reports is only cut in if the audio there is this far (dB) under
#: the window's speech. Silero misses quiet talkers on telephone lines: in
#: pyannote's sample it hears no speech in a soft "Oh, hello" 10-18 dB under the
#: other voice, while line noise in real pauses sits 30 dB under.
PAUSE_DB_BELOW_SPEECH = 20.0


def frame_db(audio: np.ndarray, frame: int) -> np.ndarray:
    """Power (dB) of each whole ``frame``-sample frame of ``audio``, in ``audio``'s precision.

    The loudness scale of every pause rule: the window cutter's (:func:`quiet_test`) and
    the turn check's (``processor.turn_check.pauses_in``).
    """
    n = len(audio) // frame
    return 10 * np.log10((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-10)


def quiet_test(audio: np.ndarray) -> Callable[[int], bool]:
    """A predicate: is the audio within 60 ms of a sample index quiet enough to cut at?"""
    frame = SAMPLE_RATE // 50
    n = len(audio) // frame
    if n == 0:
        return lambda at: True
    db = frame_db(audio, frame)
    ceiling = float(np.percentile(db, 95)) - PAUSE_DB_BELOW_SPEECH
    reach = 3 * frame

    def silent(at: int) -> bool:
        lo, hi = max(0, (at - reach) // frame), min(n, (at + reach) // frame + 1)
        return bool(hi <= lo or db[lo:hi].max() < ceiling)

    return silent


def commit_point(
    audio: np.ndarray, words: Sequence[tuple[float, float]], cut: int, policy: WindowPolicy
) -> tuple[int, int]:
    """How much of a window cut inside speech to commit: ``(samples, words kept)``.

    ``words`` are the recognised words' (start, end) in seconds from the window
    start, in order. The window is committed through the last word that ends at
    least ``carry_margin_seconds`` before ``cut`` (and no earlier than
    ``min_seconds``), up to the quietest 20 ms before the next word; everything
    after is carried into the next window, which hears the committed tail as
    left context. Words that far from the cut were decoded with context on
    both sides and are kept; the ones near the cut are decoded again. The
    result depends only on the window's audio and its transcript, so a replay
    commits the same span.

    Without words (nothing recognised) or without such a word, the whole cut is
    committed, as before carry-over existed.
    """
    if not words:
        return cut, 0
    limit = cut - int(policy.carry_margin_seconds * SAMPLE_RATE)
    ends = [round(end * SAMPLE_RATE) for _, end in words]
    last = max((i for i, end in enumerate(ends) if policy.min_samples <= end <= limit), default=None)
    if last is None:
        return cut, len(words)
    # The gap ends where the next word starts, and never past the limit: audio after
    # the last recognised word may hold the half-word Whisper dropped.
    following = round(words[last + 1][0] * SAMPLE_RATE) if last + 1 < len(words) else limit
    at, _ = _quietest_point(audio, ends[last], max(ends[last], min(following, limit)))
    return at, last + 1


def _quietest_point(audio: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """Middle of the quietest 20 ms frame in [lo, hi) and its energy (``lo`` if too short)."""
    frame = SAMPLE_RATE // 50
    seg = audio[lo:hi]
    n = len(seg) // frame
    if n == 0:
        tail = audio[max(0, lo - frame // 2) : lo + frame // 2]
        return lo, float((tail**2).mean()) if len(tail) else 0.0
    energy = (seg[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    k = int(np.argmin(energy))
    return lo + k * frame + frame // 2, float(energy[k])


def _quietest(audio: np.ndarray, lo: int, limit: int) -> int:
    """Quietest 20 ms frame between ``lo`` and ``limit``."""
    return _quietest_point(audio, lo, limit)[0] if limit - lo >= SAMPLE_RATE // 50 else limit


def to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1]."""
    return pcm.astype(np.float32) / 32768.0

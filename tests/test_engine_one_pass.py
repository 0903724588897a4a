"""A window's ASR is one encoder pass; what Whisper left unfinished is carried, not lost (issue 22).

faster-whisper decodes a 30 s input, and when Whisper leaves the last segment
unfinished it seeks to the last word's end and encodes the rest again on its
own. The second window of the real ``concat`` recording is such a window under
both CPU kernels (its rest is "7 of clubs, 2 9 3 4 0"). Cut off a longer buffer,
it now stops after one pass and the next window hears the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from contracts.frames import SAMPLE_RATE
from flowbot.wer import normalize
from processor.asr import WhisperTranscriber
from processor.window import Recognized, WindowJob, hear
from processor.windowing import WindowPolicy, plan_windows
from testkit.corpus import build, read_wav
from testkit.evaluate import cache_dir


def window(pcm: np.ndarray, start: int, policy: WindowPolicy, *, open_end: bool) -> WindowJob:
    """The window planned at ``start`` (with its left context), as the engine cuts it."""
    context = pcm[max(0, start - policy.context_samples) : start]
    plan = plan_windows(pcm[start:], context, policy, rest=True)[0]
    job = WindowJob("s", 0, start, pcm[start : start + plan.samples], plan.context, plan.carries, plan.speech)
    job.open_end = open_end  # audio follows it (the engine sets this for a window cut off a longer buffer)
    return job


def words(recognized: Recognized, until: float = float("inf")) -> list[str]:
    """The window's words (normalised as WER reads them) that start before ``until`` seconds."""
    return [t for seg in recognized.asr for w in seg.words if w.start < until for t in normalize(w.text)]


class Passes:
    """Counts the encoder passes of one transcriber (its model's ``encode`` calls)."""

    def __init__(self, encode: Callable[[np.ndarray], object]) -> None:
        self._encode = encode
        self.calls = 0

    def __call__(self, features: np.ndarray) -> object:
        encoded = self._encode(features)  # a pass refused before it ran is not counted
        self.calls += 1
        return encoded


@pytest.mark.slow
def test_a_cut_window_is_one_encoder_pass_and_the_carried_words_are_heard_next(
    transcriber: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = Passes(transcriber.model.encode)
    monkeypatch.setattr(transcriber.model, "encode", passes)
    policy = WindowPolicy()
    pcm = read_wav(build(cache_dir(None))["concat"].path)
    second_at = hear(window(pcm, 0, policy, open_end=True), transcriber, policy).samples

    passes.calls = 0
    whole = hear(window(pcm, second_at, policy, open_end=False), transcriber, policy)
    assert passes.calls == 2, "the window no longer leaves its last segment unfinished"
    passes.calls = 0
    job = window(pcm, second_at, policy, open_end=True)
    one = hear(job, transcriber, policy)
    assert passes.calls == 1  # before: 2, the rest encoded again on its own
    # The window commits up to its last decoded word; the rest (over 1 s) is carried.
    carried_s = (len(job.pcm) - one.samples) / SAMPLE_RATE
    assert carried_s > 1.0
    assert all(w.end * SAMPLE_RATE <= one.samples for seg in one.asr for w in seg.words)
    assert words(one) == words(whole)[: len(words(one))]
    # The words the second pass found in the carried audio are heard by the next
    # window, which starts where the first pass stopped (with its left context).
    rest = words(whole)[len(words(one)) :]
    assert len(rest) >= 4
    after = hear(window(pcm, second_at + one.samples, policy, open_end=True), transcriber, policy)
    heard = words(after, until=carried_s + 0.5)
    assert sum(w in heard for w in rest) >= len(rest) - 1, (rest, heard)

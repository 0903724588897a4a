"""A window's ASR is one encoder pass; what Whisper left unfinished is carried (issue 22 item 2).

faster-whisper decodes a 30 s input, and when Whisper leaves the last segment
unfinished it seeks to the last word's end and encodes the rest again on its
own. The second window of the real ``concat`` recording is such a window under
both CPU kernels (AVX2: "7 of clubs, 2 9 3 4 0" was a second pass; AVX-512: "29340").
"""

from __future__ import annotations

import numpy as np
import pytest

from contracts.frames import SAMPLE_RATE
from processor.asr import WhisperTranscriber
from processor.window import Recognized, WindowJob, hear
from processor.windowing import WindowPolicy, plan_windows
from testkit.corpus import build, read_wav
from testkit.evaluate import cache_dir


def window(pcm: np.ndarray, start: int, policy: WindowPolicy, *, open_end: bool) -> WindowJob:
    """The window planned at ``start`` (with its left context), as the engine cuts it."""
    context = pcm[max(0, start - policy.context_samples) : start]
    plan = plan_windows(pcm[start:], context, policy, rest=True)[0]
    job = WindowJob.planned("s", 0, start, pcm[start : start + plan.samples], plan, final=False)
    job.open_end = open_end
    return job


def words(recognized: Recognized) -> list[str]:
    return [w.text.strip(" ,.").lower() for seg in recognized.asr for w in seg.words]


@pytest.mark.slow
def test_an_unfinished_last_segment_is_carried_not_encoded_again(transcriber: WhisperTranscriber) -> None:
    policy = WindowPolicy()
    pcm = read_wav(build(cache_dir(None))["concat"].path)
    first = hear(window(pcm, 0, policy, open_end=True), transcriber, policy)
    second_at = first.samples

    before = transcriber.encodes.calls
    whole = hear(window(pcm, second_at, policy, open_end=False), transcriber, policy)
    assert transcriber.encodes.calls - before == 2, "the window no longer leaves its last segment unfinished"
    before = transcriber.encodes.calls
    job = window(pcm, second_at, policy, open_end=True)
    one = hear(job, transcriber, policy)
    assert transcriber.encodes.calls - before == 1
    # The undecoded rest is carried: the window commits up to its last decoded word.
    assert one.samples < len(job.pcm) - SAMPLE_RATE
    assert all(w.end * SAMPLE_RATE <= one.samples for seg in one.asr for w in seg.words)
    assert words(one) == words(whole)[: len(words(one))]
    # ... and the next window hears it: words in the carried audio, which the one pass left out.
    carried_s = (len(job.pcm) - one.samples) / SAMPLE_RATE
    assert len(words(whole)) > len(words(one))
    rest = hear(window(pcm, second_at + one.samples, policy, open_end=False), transcriber, policy)
    assert any(w.start < carried_s for seg in rest.asr for w in seg.words)

"""The GPU batching path, run on CPU: several sessions' windows in one model call, mapped back."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowbot.wer import wer
from processor.batched_asr import BatchingTranscriber, speech_clips
from producer.decode import read_pcm
from testkit.speech import Turn


@pytest.mark.slow
def test_batched_results_match_sequential_and_map_back(transcriber: Any, meeting: tuple[Path, list[Turn]]) -> None:
    wav, _ = meeting
    pcm = read_pcm(str(wav)).astype(np.float32) / 32768.0
    silence = np.zeros(5 * 16000, np.float32)
    audios = [pcm[: 12 * 16000], pcm[30 * 16000 : 55 * 16000], silence, pcm[60 * 16000 : 70 * 16000]]
    assert speech_clips(audios[2]) == []
    batched = BatchingTranscriber(transcriber, linger=0.2)
    try:
        got = batched.transcribe_batch(audios, beam_size=1)
        assert batched.calls == 1 and batched.clips >= 3, "one model call for all requests"
        assert got[2] == [], "silence costs no model time and yields nothing"
        for audio, segs in zip(audios, got, strict=True):
            if not audio.any():
                continue
            ref = " ".join(s.text for s in transcriber.transcribe(audio, beam_size=1))
            hyp = " ".join(s.text for s in segs)
            assert wer(ref, hyp) < 0.15, (ref, hyp)
            duration = audio.size / 16000
            assert all(0 <= w.start <= w.end <= duration + 0.5 for s in segs for w in s.words)
        # Concurrent callers (engine finals, interim worker) share calls.
        results: list[Any] = [None] * 3
        before = batched.calls

        def call(i: int) -> None:
            results[i] = batched.transcribe(audios[i if i != 2 else 3])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(r for r in results) and batched.calls - before < 3
    finally:
        batched.stop()


def test_batching_setting_chooses_the_path(transcriber: Any, settings: Any) -> None:
    """FLOWBOT_ASR_BATCHING: auto batches on CUDA only, on forces it on CPU, off never; only with interim on."""
    from processor.build import build_interim, use_batching
    from stores.factory import transcript_store

    assert use_batching(settings, "cuda") and not use_batching(settings, "cpu")
    assert use_batching(settings.replace(asr_batching="on"), "cpu")
    assert not use_batching(settings.replace(asr_batching="off"), "cuda")
    store = transcript_store(settings)
    for choice, batched in (("auto", False), ("on", True), ("off", False)):
        parts = build_interim(settings.replace(asr_batching=choice), transcriber, store)
        assert parts.worker is not None
        inner = parts.worker.transcriber
        assert isinstance(inner, BatchingTranscriber) is batched, choice
        assert isinstance(getattr(parts.transcriber, "inner", None), BatchingTranscriber) is batched, choice
        if isinstance(inner, BatchingTranscriber):
            inner.stop()
    off = build_interim(settings.replace(asr_batching="on", interim_seconds=0.0), transcriber, store)
    assert off.worker is None and off.transcriber is transcriber

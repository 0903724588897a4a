"""The shared test and bench helpers: the one percentile definition, and polling."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from testkit.net import free_port, wait_for
from testkit.stats import percentile


def test_percentile_is_nearest_rank() -> None:
    twenty = [float(v) for v in range(20, 0, -1)]  # order does not matter
    assert percentile(twenty, 95) == 19.0  # 95 % of 20 values are <= the 19th
    assert percentile(twenty, 50) == 10.0  # the lower middle value, not the mean of the two
    assert percentile(twenty, 100) == 20.0 and percentile(twenty, 0) == 1.0
    hundred = list(range(1, 101))
    # The viewers bench took sorted[int(0.95 n)] (96 here), numpy interpolates (95.05).
    assert percentile(hundred, 95) == 95
    assert math.isnan(percentile([], 95))
    with pytest.raises(ValueError):
        percentile([1.0], 0.95 * 1000)


def test_percentile_is_always_a_measured_value_and_monotonic() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 13, 50, 101):
        values = list(rng.exponential(2.0, n))
        got = [percentile(values, q) for q in (0, 10, 50, 90, 95, 99, 100)]
        assert all(v in values for v in got)
        assert got == sorted(got)
        # At least q % of the values are <= the q-th percentile, and fewer are < it.
        for q, v in zip((0, 10, 50, 90, 95, 99, 100), got, strict=True):
            assert sum(x <= v for x in values) >= q / 100 * n
            assert sum(x < v for x in values) < max(q / 100 * n, 1)


def test_wait_for_returns_once_true_and_names_what_it_waited_for() -> None:
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > 0.05, timeout=5)
    with pytest.raises(AssertionError, match="waiting for the moon"):
        wait_for(lambda: False, timeout=0.05, what="the moon")
    assert 0 < free_port() < 65536


def test_two_writers_of_one_cached_recording_each_put_a_whole_file_in_place(tmp_path: Path) -> None:
    """A bench and a test building the same cache at once: the old shared ``.part`` name let one
    writer rename the other's half-written file away (FileNotFoundError)."""
    import threading

    from testkit.corpus import read_wav, write_wav

    pcm = (np.arange(16_000 * 4) % 2000 - 1000).astype(np.int16)
    target = tmp_path / "concat.wav"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        try:
            for _ in range(20):
                write_wav(target, pcm)
        except BaseException as exc:  # any exception is the failure under test
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert np.array_equal(read_wav(target), pcm)
    assert [p.name for p in tmp_path.iterdir()] == ["concat.wav"]


def test_a_shifted_recording_is_the_same_speech_later_with_its_references_moved(tmp_path: Path) -> None:
    """bench.quality --shift: silence in front moves the window cuts, the references move with the audio."""
    from testkit.corpus import SR, Recording, Utterance, read_wav, shifted, write_wav

    pcm = (np.arange(SR * 2) % 2000 - 1000).astype(np.int16)
    rec = Recording("r", write_wav(tmp_path / "r.wav", pcm), (Utterance("a", 0.5, 1.5, "hi"),), ((0.4, 1.6, "a"),))
    moved = shifted(rec, 0.3, tmp_path / "moved")
    audio = read_wav(moved.path)
    assert len(audio) == len(pcm) + round(0.3 * SR)
    assert not audio[: round(0.3 * SR)].any() and np.array_equal(audio[round(0.3 * SR) :], pcm)
    assert moved.utterances == (Utterance("a", 0.8, 1.8, "hi"),)
    assert moved.reference_turns() == [(pytest.approx(0.7), pytest.approx(1.9), "a")]
    assert moved.text == rec.text and rec.path.exists()

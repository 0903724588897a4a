"""Window cuts and commit points, on synthetic audio (no model)."""

from __future__ import annotations

import numpy as np

from contracts.frames import SAMPLE_RATE
from processor.windowing import PAUSE_DB_BELOW_SPEECH, WindowPolicy, commit_point, quiet_test

SR = SAMPLE_RATE


def _tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_commit_point_keeps_words_clear_of_the_cut() -> None:
    policy = WindowPolicy(30, 15, carry_margin_seconds=1.0)
    audio = _tone(30.0)
    audio[int(28.96 * SR) : int(28.99 * SR)] = 0.0  # the gap after the last safe word
    words = [(i * 0.5, i * 0.5 + 0.45) for i in range(60)]  # one word every 0.5 s up to 30 s
    at, kept = commit_point(audio, words, 30 * SR, policy)
    # The last word ending at least 1 s before the cut (29.0 s) is word 57, ending 28.95 s;
    # the window is committed in the quiet gap before word 58 (29.0 s).
    assert kept == 58
    assert 28.95 * SR <= at <= 29.0 * SR
    assert np.abs(audio[at - 80 : at + 80]).max() == 0.0


def test_commit_point_stops_at_the_limit_when_the_last_words_were_dropped() -> None:
    """Whisper dropped what follows the last word: that audio is carried, not committed."""
    policy = WindowPolicy(30, 15, carry_margin_seconds=1.0)
    audio = _tone(30.0)
    words = [(float(i), i + 0.8) for i in range(20)]  # nothing recognised after 19.8 s
    at, kept = commit_point(audio, words, 30 * SR, policy)
    assert kept == 20
    assert 19.8 * SR <= at <= 29 * SR


def test_commit_point_without_words_or_room_commits_the_cut() -> None:
    policy = WindowPolicy(30, 15)
    audio = _tone(30.0)
    assert commit_point(audio, [], 30 * SR, policy) == (30 * SR, 0)
    # Only words before min_seconds: no safe place after it, commit everything.
    assert commit_point(audio, [(1.0, 2.0), (3.0, 4.0)], 30 * SR, policy) == (30 * SR, 2)


def test_a_vad_pause_over_loud_audio_is_not_a_place_to_cut() -> None:
    """Silero misses quiet talkers; the cut also needs the audio itself to be quiet."""
    audio = np.concatenate([_tone(2.0), np.zeros(SR // 2, np.float32), _tone(2.0), _tone(0.5, 0.05), _tone(2.0)])
    silent = quiet_test(audio)
    assert silent(int(2.25 * SR))  # digital silence
    assert not silent(int(4.75 * SR))  # 16 dB under the speech: a soft voice, not a pause
    assert PAUSE_DB_BELOW_SPEECH > 16
    assert not silent(int(1.0 * SR))


def test_shorter_pauses_are_tried_before_forcing() -> None:
    policy = WindowPolicy(30, 15, min_silence_ms=300)
    assert policy.silence_thresholds_ms == (300, 200, 150)
    assert WindowPolicy(30, 15, min_silence_ms=180).silence_thresholds_ms == (180, 150)

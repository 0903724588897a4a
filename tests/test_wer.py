"""WER and cpWER on hand-checked examples."""

from __future__ import annotations

import pytest

from flowbot.wer import cpwer, wer


def test_wer_normalises_case_punctuation_and_digits() -> None:
    assert wer("Ten of clubs.", "10 of Clubs") == 0.0
    assert wer("hello there world", "hello world") == pytest.approx(1 / 3)


def test_cpwer_pairs_speakers_whatever_their_labels() -> None:
    ref = {"Diane": "oh hello this is diane", "Sheila": "neither did i"}
    assert cpwer(ref, {"S2": "oh hello this is diane", "S1": "neither did i"}) == 0.0
    # Right words, wrong speaker: WER is perfect, cpWER counts the words twice (deleted + inserted).
    swapped = {"S1": "oh hello this is diane neither", "S2": "did i"}
    assert wer("oh hello this is diane neither did i", "oh hello this is diane neither did i") == 0.0
    assert cpwer(ref, swapped) == pytest.approx(2 / 8)
    # A missing speaker: all their words are errors; an extra speaker: all inserted.
    assert cpwer(ref, {"S1": "oh hello this is diane"}) == pytest.approx(3 / 8)
    assert cpwer(ref, {**{"S1": "oh hello this is diane", "S2": "neither did i"}, "S3": "um"}) == pytest.approx(1 / 8)

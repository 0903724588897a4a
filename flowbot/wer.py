"""Word error rates with Whisper-style text normalisation (for tests and benchmarks).

- :func:`wer`: the transcript's words against the reference's, speakers ignored.
- :func:`cpwer`: who said what (CHiME-6's concatenated minimum-permutation WER):
  each speaker's words are concatenated, every reference speaker is paired with
  one hypothesis speaker so that the total errors are least, and the words of
  unpaired speakers all count as errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NUMBERS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; spelled digits become digits."""
    text = text.lower().replace("-", " ")
    words = re.findall(r"[a-z0-9']+", text)
    return [_NUMBERS.get(w, w).strip("'") for w in words if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0.0 = perfect)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def cpwer(reference: Mapping[str, str], hypothesis: Mapping[str, str]) -> float:
    """Concatenated minimum-permutation WER of per-speaker texts (labels may differ)."""
    from scipy.optimize import linear_sum_assignment

    refs = [normalize(t) for t in reference.values()]
    hyps = [normalize(t) for t in hypothesis.values()]
    total = sum(len(r) for r in refs)
    size = max(len(refs), len(hyps))
    refs += [[]] * (size - len(refs))
    hyps += [[]] * (size - len(hyps))
    cost = [[edit_distance(r, h) for h in hyps] for r in refs]
    rows, cols = linear_sum_assignment(cost)
    errors = sum(cost[r][c] for r, c in zip(rows, cols, strict=True))
    if not total:
        return 0.0 if not errors else 1.0
    return errors / total

"""What one window tells the session speaker registry about its voices (:mod:`processor.speakers`).

Pure functions of one window's :class:`processor.diarization.Diarization`: the one-to-one
match of its speakers with session voices, the voice of what is left of a window speaker
that lost a turn to a new voice, and the pieces of one turn that would each found a speaker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processor.diarization import Diarization, unit_vector
from processor.turn_check import NEW_VOICE

#: Two window speakers whose turns meet with a gap under this (s) were cut from one turn.
PIECE_GAP = 0.05


def one_to_one(dist: np.ndarray, threshold: float | np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs of the one-to-one assignment of least total distance, under ``threshold``
    (one, or one per column): one session speaker per window speaker, the window's own clustering
    already decided they differ."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(dist)
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), dist.shape[1:])
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if dist[r, c] < limit[c]]


def voices_left(diarization: Diarization) -> dict[str, np.ndarray]:
    """The voice of what is left of each window speaker that lost a turn to a new voice.

    The unit-norm mean of its remaining turns' voices (``turn_voices``, weighted by their
    length), for each window speaker ``lab`` with a ``lab+<start>`` speaker
    (:func:`processor.turn_check.new_voices`): its diarizer embedding still holds the voice
    that left it.
    """
    out = {}
    for lab in {t.speaker for t in diarization.turns}:
        if not any(k.startswith(f"{lab}{NEW_VOICE}") for k in diarization.embeddings):
            continue
        vecs = [
            (v, t.end - t.start)
            for t in diarization.turns
            if t.speaker == lab and (v := diarization.turn_voices.get(t.start)) is not None
        ]
        if vecs and (mean := unit_vector(sum(v * w for v, w in vecs))) is not None:
            out[lab] = mean
    return out


def one_turn_pieces(diarization: Diarization, labels: Sequence[str], seconds: dict[str, float]) -> dict[str, str]:
    """Of ``labels``, each one whose turns meet another's with no pause, mapped to the longest of its group.

    A window speaker of one turn is what the turn check cut out of a longer turn; where two of
    them meet (gap under :data:`PIECE_GAP`), one turn was cut in two (squeezed's 2-3 s of
    singing in 1 s pieces, each 0.5-0.9 from the next). Groups are closed under meeting; the
    speaker with most ``seconds`` of a group stands for it (it is not a key).
    """
    spans = {lab: [(t.start, t.end) for t in diarization.turns if t.speaker == lab] for lab in labels}
    group = {lab: lab for lab in labels}

    def root(lab: str) -> str:
        while group[lab] != lab:
            lab = group[lab]
        return lab

    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if any(abs(e - s2) < PIECE_GAP or abs(e2 - s) < PIECE_GAP for s, e in spans[a] for s2, e2 in spans[b]):
                group[root(b)] = root(a)
    members: dict[str, list[str]] = {}
    for lab in labels:
        members.setdefault(root(lab), []).append(lab)
    out = {}
    for found in members.values():
        lead = max(found, key=lambda x: (seconds.get(x, 0.0), x))
        out.update({lab: lead for lab in found if lab != lead})
    return out

"""Two meetings that share voices but use other words: the dev set for naming speakers by voice.

Built at test time, like testkit/corpus.py, from the same registry
packages (pyannote's telephone sample, pocketsphinx's LibriVox reader, card
reader, "go forward" speaker and singer) plus four Debian flite voices. No
clip is used in both meetings, so the second meeting's words are new.

- ``first``: the owner's first meeting. The voices the owner names and
  remembers there (:data:`ENROLLED`): the LibriVox reader, Diane (the
  sample's first speaker) and the flite voices ``slt`` and ``rms``. Sheila and
  the card reader speak too, but are never remembered.
- ``second``: a later meeting with the enrolled voices saying other things,
  and voices never enrolled: Sheila, the card reader, the singer, the "go
  forward" speaker and the flite voices ``awb`` and ``kal16``. A name on any of
  those is a false accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from testkit.corpus import (
    SR,
    Clip,
    Recording,
    Utterance,
    _save,
    assemble,
    pocketsphinx_clips,
    pocketsphinx_data,
    sample_clip,
)
from testkit.speech import MEETING, say

#: Reference speakers the owner remembers in the first meeting.
ENROLLED = ("reader", "Diane", "slt", "rms")
#: Where the sample's conversation is split between the two meetings (between two turns).
SAMPLE_SPLIT_S = 7.95


def _part(clip: Clip, start: float, end: float) -> Clip:
    """The clip between ``start`` and ``end`` seconds (references inside it kept)."""
    return Clip(
        clip.speaker,
        clip.pcm[int(start * SR) : int(end * SR)],
        tuple(
            Utterance(u.speaker, u.start - start, min(u.end, end) - start, u.text)
            for u in clip.utterances
            if start <= u.start < end
        ),
        tuple((max(s, start) - start, min(e, end) - start, k) for s, e, k in clip.turns if e > start and s < end),
    )


def _flite(voice: str, line: int, workdir: Path) -> Clip:
    text = MEETING[line][1]
    pcm = say(text, voice, workdir)
    end = len(pcm) / SR
    return Clip(voice, pcm, (Utterance(voice, 0.0, end, text),), ((0.0, end, voice),))


def _meeting(cache: Path, name: str, order: Sequence[Clip], seed: int) -> Recording:
    gaps = [float(g) for g in np.random.default_rng(seed).uniform(0.3, 0.7, len(order))]
    pcm, utts, turns = assemble(order, gaps)
    return _save(cache, name, pcm, utts, turns, enrolled=list(ENROLLED))


def build_pair(cache: Path) -> dict[str, Recording]:
    """``first`` and ``second`` (see the module docstring), built into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    clips = pocketsphinx_clips(pocketsphinx_data(cache / "sources"))
    sample = sample_clip()
    flite = cache / "flite"
    flite.mkdir(exist_ok=True)
    first = [
        clips["librivox-0870"],
        _flite("slt", 0, flite),
        _part(sample, 0.0, SAMPLE_SPLIT_S),
        _flite("rms", 1, flite),
        clips["cards-001"],
        clips["librivox-0880"],
        _flite("slt", 2, flite),
        clips["cards-002"],
        _flite("rms", 3, flite),
        _flite("slt", 5, flite),
    ]
    second = [
        _flite("rms", 8, flite),
        clips["librivox-0890"],
        clips["cards-003"],
        _part(sample, SAMPLE_SPLIT_S, len(sample.pcm) / SR),
        clips["forever-2"],
        _flite("slt", 10, flite),
        clips["librivox-0920"],
        _flite("awb", 12, flite),
        clips["cards-005"],
        clips["goforward"],
        _flite("kal16", 14, flite),
        clips["librivox-0930"],
        clips["cards-004"],
        clips["forever-4"],
        _flite("rms", 16, flite),
        _flite("slt", 18, flite),
        clips["digits"],
        _flite("awb", 20, flite),
        _flite("kal16", 22, flite),
    ]
    return {"first": _meeting(cache, "naming-first", first, 21), "second": _meeting(cache, "naming-second", second, 22)}

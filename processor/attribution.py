"""Words to speakers: each word goes to the speaker active at its middle.

Uses the *exclusive* diarization (at most one speaker at any time), so every
word has exactly one owner. A Whisper segment that spans a turn change is split
at the change, so no segment is given wholesale to one speaker.

Diarization boundaries are only good to a few hundred milliseconds, so a lone
short word whose middle lands just across a boundary, between two words of the
same speaker, stays with that speaker instead of becoming a one-word segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from contracts.segments import Word
from processor.asr import AsrSegment, words_text
from processor.diarization import Diarization, turns_overlap_seconds

#: How far (s) a diarization boundary may be off before a lone word is trusted to it.
BOUNDARY_TOLERANCE = 0.3


@dataclass(frozen=True, slots=True)
class AttributedSegment:
    """A run of words by one speaker; times relative to the window."""

    start: float
    end: float
    speaker: str | None
    text: str
    words: tuple[Word, ...]
    avg_logprob: float


def attribute(segments: Sequence[AsrSegment], diarization: Diarization) -> list[AttributedSegment]:
    """Split ASR segments at speaker changes and label every word."""
    out: list[AttributedSegment] = []
    for seg in segments:
        if not seg.words:
            speaker = _dominant(diarization, seg.start, seg.end)
            out.append(AttributedSegment(seg.start, seg.end, speaker, seg.text, (), seg.avg_logprob))
            continue
        speakers = [diarization.speaker_at((w.start + w.end) / 2) for w in seg.words]
        speakers = _smooth_lone_words(seg.words, speakers, diarization)
        run: list[Word] = []
        run_speaker: str | None = None
        for w, spk in zip(seg.words, speakers, strict=True):
            if run and spk != run_speaker:
                out.append(_close(run, run_speaker, seg.avg_logprob))
                run = []
            run.append(replace(w, speaker=spk))
            run_speaker = spk
        if run:
            out.append(_close(run, run_speaker, seg.avg_logprob))
    return out


def _dominant(diarization: Diarization, start: float, end: float) -> str | None:
    """Speaker talking most within [start, end); the one at the middle if nobody does."""
    talk = turns_overlap_seconds(diarization.turns, start, end)
    if talk:
        return max(talk.items(), key=lambda kv: kv[1])[0]
    return diarization.speaker_at((start + end) / 2)


def _smooth_lone_words(words: Sequence[Word], speakers: list[str | None], diarization: Diarization) -> list[str | None]:
    """Give a lone word between two same-speaker words to that speaker if a boundary is near."""
    out = list(speakers)
    for i in range(1, len(words) - 1):
        before, here, after = out[i - 1], speakers[i], speakers[i + 1]
        if before is None or before != after or here == before:
            continue
        w = words[i]
        near = turns_overlap_seconds(
            [t for t in diarization.turns if t.speaker == before],
            w.start - BOUNDARY_TOLERANCE,
            w.end + BOUNDARY_TOLERANCE,
        )
        if near and w.end - w.start <= 2 * BOUNDARY_TOLERANCE:
            out[i] = before
    return out


def _close(words: list[Word], speaker: str | None, logprob: float) -> AttributedSegment:
    return AttributedSegment(words[0].start, words[-1].end, speaker, words_text(words), tuple(words), logprob)

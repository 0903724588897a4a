"""Words to speakers: each word goes to the speaker active at its middle.

A Whisper segment that spans a turn change is split at the change, so no
segment is given wholesale to one speaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from contracts.segments import Word
from processor.asr import AsrSegment, words_text
from processor.diarization import Diarization


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
            speaker = diarization.speaker_at((seg.start + seg.end) / 2)
            out.append(AttributedSegment(seg.start, seg.end, speaker, seg.text, (), seg.avg_logprob))
            continue
        run: list[Word] = []
        run_speaker: str | None = None
        for w in seg.words:
            spk = diarization.speaker_at((w.start + w.end) / 2)
            word = replace(w, speaker=spk)
            if run and spk != run_speaker:
                out.append(_close(run, run_speaker, seg.avg_logprob))
                run = []
            run.append(word)
            run_speaker = spk
        if run:
            out.append(_close(run, run_speaker, seg.avg_logprob))
    return out


def _close(words: list[Word], speaker: str | None, logprob: float) -> AttributedSegment:
    return AttributedSegment(
        words[0].start, words[-1].end, speaker, words_text(words), tuple(words), logprob
    )

"""Words to speakers, and window-relative ASR output onto the session timeline.

Each word goes to the speaker active at its middle. A word whose middle falls in a gap
between turns goes to the turn on the side that segmentation-3.0's own frame activity
(``Diarization.activity``) heard more of under the word, else to the nearer turn: on the
real dev set (replayed, both ISAs) squeezed's cpWER - WER fell 1.0 point and nothing moved
elsewhere; all speakers heard under the word, or ties broken by label, made other recordings
worse (docs/diarization.md, round 28).

Uses the *exclusive* diarization (at most one speaker at any time), so every
word has exactly one owner. A Whisper segment that spans a turn change is split
at the change, so no segment is given wholesale to one speaker.

Diarization boundaries are only good to a few hundred milliseconds, so a lone
short word whose middle lands just across a boundary, between two words of the
same speaker, stays with that speaker instead of becoming a one-word segment.

:func:`transcript_segments` is the one place window-relative pieces become
:class:`contracts.segments.TranscriptSegment` rows: the engine's final passes
and the interim worker's passes both go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from contracts.frames import SAMPLE_RATE
from contracts.segments import TranscriptSegment, Word
from processor.asr import AsrSegment
from processor.diarization import BOUNDARY_TOLERANCE, Diarization, SpeakerTurn, turns_overlap_seconds
from processor.segtime import words_text


@dataclass(frozen=True, slots=True)
class AttributedSegment:
    """A run of words by one speaker; times relative to the window."""

    start: float
    end: float
    speaker: str | None
    text: str
    words: tuple[Word, ...]
    avg_logprob: float

    @classmethod
    def spoken(cls, words: Sequence[Word], speaker: str | None, avg_logprob: float) -> AttributedSegment:
        """A run of ``words`` (at least one), each labelled ``speaker``; text and times from the words."""
        labelled = tuple(replace(w, speaker=speaker) for w in words)
        return cls(labelled[0].start, labelled[-1].end, speaker, words_text(labelled), labelled, avg_logprob)


def attribute(segments: Sequence[AsrSegment], diarization: Diarization) -> list[AttributedSegment]:
    """Split ASR segments at speaker changes and label every word."""
    out: list[AttributedSegment] = []
    for seg in segments:
        if not seg.words:
            speaker = _dominant(diarization, seg.start, seg.end)
            out.append(AttributedSegment(seg.start, seg.end, speaker, seg.text, (), seg.avg_logprob))
            continue
        speakers = [_speaker_of(diarization, w) for w in seg.words]
        speakers = _smooth_lone_words(seg.words, speakers, diarization)
        run: list[Word] = []
        run_speaker: str | None = None
        for w, spk in zip(seg.words, speakers, strict=True):
            if run and spk != run_speaker:
                out.append(AttributedSegment.spoken(run, run_speaker, seg.avg_logprob))
                run = []
            run.append(w)
            run_speaker = spk
        if run:
            out.append(AttributedSegment.spoken(run, run_speaker, seg.avg_logprob))
    return out


def transcript_segments(
    pieces: Sequence[AttributedSegment],
    *,
    session_id: str,
    window_index: int,
    start_sample: int,
    final: bool = True,
    stable: Sequence[bool] | None = None,
) -> list[TranscriptSegment]:
    """Window-relative pieces as rows on the session timeline, numbered in order.

    Times move by the window's start and are rounded to the millisecond
    (probabilities to 4 places), so a replayed window writes identical rows.
    ``stable`` flags each piece (interim passes: the agreed prefix); None means
    all stable.
    """
    offset = start_sample / SAMPLE_RATE
    flags = [True] * len(pieces) if stable is None else stable
    return [
        TranscriptSegment(
            session_id=session_id,
            window_index=window_index,
            segment_index=i,
            start=round(offset + piece.start, 3),
            end=round(offset + piece.end, 3),
            text=piece.text,
            speaker=piece.speaker,
            words=tuple(
                Word(round(offset + w.start, 3), round(offset + w.end, 3), w.text, round(w.probability, 4), w.speaker)
                for w in piece.words
            ),
            is_final=final,
            stable=flag,
            avg_logprob=round(piece.avg_logprob, 4),
        )
        for i, (piece, flag) in enumerate(zip(pieces, flags, strict=True))
    ]


def _speaker_of(diarization: Diarization, word: Word) -> str | None:
    """The speaker of the turn at the word's middle; in a gap, of the turns on its two sides the one
    segmentation-3.0 heard more of under the word (the nearer one unless the other was heard more)."""
    middle = (word.start + word.end) / 2
    if diarization.activity is None or any(t.start <= middle < t.end for t in diarization.turns):
        return diarization.speaker_at(middle)
    sides = {t.speaker for t in _neighbours(diarization, middle)}
    heard = {lab: n for lab, n in diarization.activity.heard(word.start, word.end).items() if lab in sides}
    nearest = diarization.speaker_at(middle)
    if not heard:
        return nearest
    best = max(sorted(heard), key=heard.__getitem__)
    return best if heard[best] > heard.get(nearest or "", 0) else nearest


def _neighbours(diarization: Diarization, t: float) -> list[SpeakerTurn]:
    """The last turn ending before ``t`` and the first starting after it (those that exist)."""
    before = [x for x in diarization.turns if x.end <= t]
    after = [x for x in diarization.turns if x.start > t]
    return [
        *([max(before, key=lambda x: x.end)] if before else []),
        *([min(after, key=lambda x: x.start)] if after else []),
    ]


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

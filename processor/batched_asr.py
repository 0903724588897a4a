"""One batched model call for many sessions' windows (the GPU path).

On a GPU, one Whisper call per session per tick leaves the device mostly idle:
the encoder runs on a 30 s mel whether the batch holds one clip or sixteen.
:class:`BatchingTranscriber` collects concurrent ``transcribe`` requests (final
passes from the engine threads, interim snapshots from the interim worker),
groups those with the same decoding options (beam size, prompt), concatenates
their speech clips and runs faster-whisper's ``BatchedInferencePipeline`` once
with ``clip_timestamps`` marking each clip, then maps the segments back to the
request (and time) they came from.

Each request's audio is first cut into speech clips of at most 30 s with the
Silero VAD shipped in faster-whisper (the sequential path skips silence the
same way), so a request with no speech costs no model time at all.

Live, it is only wired in for ``device == "cuda"`` by default
(``FLOWBOT_ASR_BATCHING=on`` forces it): on two CPU cores the interim worker's
priority rules matter more. For a file (``flowbot transcribe``) all audio is
known up front, and one session's windows go through it in batches on any
device when ``FLOWBOT_TRANSCRIBE_BATCH_WINDOWS`` > 1
(:func:`processor.build.build_file_parts`).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from contracts.frames import SAMPLE_RATE
from processor.asr import AsrResult, AsrSegment, Transcriber, WhisperTranscriber, guard, loops, whisper_segment
from processor.segtime import middle, shifted, split_after
from processor.vad import Spans

log = logging.getLogger(__name__)

#: Whisper's input length; a clip never exceeds it.
CLIP_SECONDS = 30.0
#: Speech left after a clip's last decoded word that is decoded again (see ``_call``).
TAIL_SECONDS = 2.0
#: Decoding rounds per call at most (the first, then tails of tails).
MAX_ROUNDS = 3


@dataclass
class _Request:
    audio: np.ndarray
    beam_size: int
    prompt: str | None
    #: Speech spans VAD already found (None: found here).
    speech: Spans | None = None
    future: Future[AsrResult] = field(default_factory=Future)


def speech_clips(audio: np.ndarray, max_seconds: float = CLIP_SECONDS) -> list[tuple[int, int]]:
    """(start, end) sample spans covering the speech in ``audio``, each at most ``max_seconds``."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if audio.size == 0:
        return []
    opts = VadOptions(min_silence_duration_ms=500, speech_pad_ms=200, max_speech_duration_s=max_seconds)
    return clips_of([(int(c["start"]), int(c["end"])) for c in get_speech_timestamps(audio, opts)], max_seconds)


def clips_of(spans: Spans, max_seconds: float = CLIP_SECONDS) -> list[tuple[int, int]]:
    """Speech spans joined into clips of at most ``max_seconds`` (the pauses in between ride along)."""
    limit = int(max_seconds * SAMPLE_RATE)
    clips: list[tuple[int, int]] = []
    for start, end in spans:
        if clips and end - clips[-1][0] <= limit:
            clips[-1] = (clips[-1][0], end)  # the pause in between rides along, as in one window
        else:
            clips.append((start, min(end, start + limit)))
    return clips


class BatchingTranscriber(Transcriber):
    """Thread-safe ``transcribe``/``transcribe_batch`` served by batched model calls.

    ``inner``'s model, options and hallucination guard are reused (and its
    sequential ``transcribe`` for a loop, which needs the temperature fallback).
    ``max_batch`` clips go into one call; a request waits at most ``linger``
    seconds for company.
    """

    def __init__(self, inner: WhisperTranscriber, *, max_batch: int = 16, linger: float = 0.01) -> None:
        from faster_whisper import BatchedInferencePipeline

        self.inner = inner
        self.options = inner.options
        self.max_batch = max_batch
        self.linger = linger
        self.pipeline = BatchedInferencePipeline(inner.model)
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._stopping = False
        #: Batched model calls (one per group of requests with speech, plus one per round of
        #: skipped speech decoded again), and the clips they decoded (re-decoded ones included).
        #: A group with no speech makes no call.
        self.calls = 0
        self.clips = 0
        self._thread = threading.Thread(target=self._run, name="asr-batcher", daemon=True)
        self._thread.start()

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """Same contract as :meth:`processor.asr.WhisperTranscriber.transcribe`."""
        spans = None if speech is None else [speech]
        return self.transcribe_batch([audio], beam_size=beam_size, initial_prompt=initial_prompt, speech=spans)[0]

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Sequence[Spans] | None = None,
    ) -> list[AsrResult]:
        """Several float32 16 kHz audios; one result per audio, times relative to it."""
        beam = beam_size or self.options.beam_size
        spans: Sequence[Spans | None] = speech if speech is not None else [None] * len(audios)
        reqs = [
            _Request(np.asarray(a, dtype=np.float32), beam, initial_prompt, s)
            for a, s in zip(audios, spans, strict=True)
        ]
        with self._cond:
            if self._stopping:
                raise RuntimeError("batching transcriber stopped")
            self._queue.extend(reqs)
            self._cond.notify()
        return [r.future.result() for r in reqs]

    def stop(self) -> None:
        """Stop the batcher thread after the call in progress."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # -- batcher -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    return
            time.sleep(self.linger)  # let concurrent callers join this call
            with self._cond:
                first = self._queue[0]
                key = (first.beam_size, first.prompt)
                group = [r for r in self._queue if (r.beam_size, r.prompt) == key][: self.max_batch]
                for r in group:
                    self._queue.remove(r)
            try:
                results = self._call(group)
            except Exception as exc:
                log.exception("batched asr call failed", extra={"requests": len(group)})
                for r in group:
                    r.future.set_exception(exc)
                continue
            for r, res in zip(group, results, strict=True):
                r.future.set_result(res)

    def _call(self, group: list[_Request]) -> list[AsrResult]:
        # (request, sample offset in its audio, audio) of each piece still to decode.
        pieces = [(i, start, req.audio[start:end]) for i, req in enumerate(group) for start, end in _clips(req)]
        out: list[list[AsrSegment]] = [[] for _ in group]
        for _ in range(MAX_ROUNDS):
            if not pieces:
                break
            tails: list[tuple[int, int, np.ndarray]] = []
            for (i, offset, audio), segs in zip(pieces, self._decode(group[0], [p[2] for p in pieces]), strict=True):
                out[i].extend(shifted(seg, offset / SAMPLE_RATE) for seg in segs)
                # Without timestamp tokens the decoder may stop early or skip a sentence (at a
                # pause) and drop that speech: decode what lies between the words again, as
                # faster-whisper's sequential decoding seeks past its last segment.
                for a, b in missed(audio, segs):
                    tails.append((i, offset + a, audio[a:b]))
            pieces = tails
        opts = self.options
        results = []
        for req, segs in zip(group, out, strict=True):
            segs.sort(key=lambda seg: seg.start)
            # Loops are judged on the whole decode of a clip, before it is split into sentences.
            if any(loops(seg, opts) for seg in segs):
                # The batched pipeline has no temperature fallback: the sequential path has.
                results.append(
                    self.inner.transcribe(
                        req.audio, beam_size=req.beam_size, initial_prompt=req.prompt, speech=req.speech
                    )
                )
            else:
                results.append(guard([part for seg in segs for part in sentences(seg)], opts))
        return results

    def _decode(self, like: _Request, audios: Sequence[np.ndarray]) -> list[list[AsrSegment]]:
        """One batched model call over ``audios`` (each at most 30 s); segments per audio, times relative to it."""
        starts: list[int] = []
        pos = 0
        for audio in audios:
            starts.append(pos)
            pos += len(audio)
        segments, _info = self.pipeline.transcribe(
            np.concatenate(list(audios)),
            clip_timestamps=[
                {"start": a / SAMPLE_RATE, "end": (a + len(x)) / SAMPLE_RATE}
                for a, x in zip(starts, audios, strict=True)
            ],
            batch_size=len(audios),
            **self.options.decode_kwargs(like.beam_size, like.prompt),
        )
        self.calls += 1
        self.clips += len(audios)
        seconds = [a / SAMPLE_RATE for a in starts]
        out: list[list[AsrSegment]] = [[] for _ in audios]
        for seg in segments:
            # Whisper's times are quantised to 20 ms, so a segment may start a hair before its
            # clip: attribute it by its middle, which always lies inside the clip.
            k = max(0, bisect.bisect_right(seconds, middle(float(seg.start), float(seg.end))) - 1)
            converted = whisper_segment(seg)
            if converted is not None:
                out[k].append(shifted(converted, -seconds[k]))
        return out


def _clips(req: _Request) -> list[tuple[int, int]]:
    """The request's speech as clips: from the spans it came with, else from VAD run here."""
    return speech_clips(req.audio) if req.speech is None else clips_of(req.speech)


def missed(audio: np.ndarray, segments: Sequence[AsrSegment]) -> list[tuple[int, int]]:
    """Sample spans of ``audio`` at least ``TAIL_SECONDS`` long with no decoded word in them but speech (VAD).

    None when nothing was decoded at all (the model heard no speech there).
    """
    words = [(w.start, w.end) for seg in segments for w in seg.words]
    if not words:
        return []
    edges = [0, *(round(x * SAMPLE_RATE) for pair in words for x in pair), len(audio)]
    out = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= TAIL_SECONDS * SAMPLE_RATE and any(e - s >= SAMPLE_RATE for s, e in speech_clips(audio[a:b])):
            out.append((a, b))
    return out


def sentences(seg: AsrSegment) -> list[AsrSegment]:
    """``seg`` split after each word that ends a sentence (``.``, ``?``, ``!``).

    The batched pipeline decodes without timestamp tokens, so a clip comes back
    as one segment of up to 30 s; the sequential path's segments are about a
    sentence long, and so are captions and the stored rows. The confidence
    figures are the clip's (faster-whisper reports them per decoded chunk anyway).
    """
    return split_after(seg, [i for i, w in enumerate(seg.words) if w.text.strip().endswith((".", "?", "!"))])

"""Speech recognition with faster-whisper: the Transcriber boundary, the hallucination guard, the model.

Models are resolved on disk by :mod:`processor.asr_models` (never downloaded at run time).
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import Word
from contracts.settings import Device
from processor.asr_models import resolve_model
from processor.vad import Spans

if TYPE_CHECKING:
    from faster_whisper.transcribe import Segment as WhisperSegment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AsrSegment:
    """One recognised segment, times relative to the audio passed in."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class AsrOptions:
    """Decoding options; the hallucination thresholds name the failure they stop."""

    beam_size: int = 5
    language: str | None = None
    #: Whisper invents text over silence; a segment the model itself thinks is
    #: probably not speech *and* decodes with low confidence is dropped.
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    #: A looping decode ("thank you thank you ...") is judged inside each segment:
    #: an n-gram of up to ``loop_max_ngram`` words repeated back to back at least
    #: ``loop_min_repeats`` times over at least ``loop_min_words`` words. A window
    #: with a loop is decoded again at each of ``loop_temperatures`` in turn
    #: (faster-whisper's temperature fallback, triggered by the loop); only a loop
    #: that survives all of them is dropped (and counted).
    #:
    #: faster-whisper's own trigger, a compression ratio above 2.4, is switched
    #: off: the ratio describes the whole decoded 30 s chunk, so a meeting that
    #: repeats itself (agendas, read-out numbers) trips it, and when every
    #: temperature trips it faster-whisper keeps the decode *under* the ratio with
    #: the best log-probability, however bad. 13 flite sentences "Sentence number
    #: N. The team reviewed item N today." decode at avg_logprob -0.15 (ratio 3.5)
    #: and came back as a -1.5 guess with half the items in 2 of 6 runs.
    loop_min_repeats: int = 4
    loop_min_words: int = 8
    loop_max_ngram: int = 8
    loop_temperatures: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    #: Every word below this probability: noise the model spelled out.
    min_word_probability: float = 0.15
    #: Skip silent stretches inside a window before decoding (Silero VAD).
    vad_filter: bool = True
    #: Conditioning on previous text spreads a hallucination across a window.
    condition_on_previous_text: bool = False

    def decode_kwargs(self, beam_size: int, initial_prompt: str | None) -> dict[str, object]:
        """The faster-whisper arguments the sequential and the batched path share."""
        return {
            "language": self.language,
            "beam_size": beam_size,
            "word_timestamps": True,
            "no_speech_threshold": self.no_speech_threshold,
            "log_prob_threshold": self.logprob_threshold,
            # Off: loops are judged per segment (the loop_* options above).
            "compression_ratio_threshold": None,
            "initial_prompt": initial_prompt,
        }


class DropReason(enum.StrEnum):
    """Why the hallucination guard drops a segment (the keys of :attr:`AsrResult.dropped`)."""

    NO_SPEECH = "no_speech"
    REPETITION_LOOP = "repetition_loop"
    LOW_CONFIDENCE = "low_confidence"


_WORD = re.compile(r"[\w']+")


class AsrResult(list[AsrSegment]):
    """The segments the hallucination guard kept; ``dropped`` counts the others by reason."""

    def __init__(self, kept: Iterable[AsrSegment] = (), dropped: Counter[str] | None = None) -> None:
        super().__init__(kept)
        self.dropped: Counter[str] = dropped if dropped is not None else Counter()


class Transcriber(Protocol):
    """The ASR boundary: float32 16 kHz mono audio in, guarded segments out, times relative to it.

    The engine's final passes and the interim worker both use it. A class that
    subclasses it explicitly inherits a :meth:`transcribe_batch` that calls
    :meth:`transcribe` once per audio; the batched GPU path overrides it with one
    model call.
    """

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """Transcribe ``audio``; ``result.dropped`` counts what the hallucination guard dropped.

        ``speech``: where VAD already found speech in ``audio`` (sample spans); only
        that is decoded, and no VAD runs again. None: the transcriber finds it.
        """
        ...

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Sequence[Spans] | None = None,
    ) -> list[AsrResult]:
        """One result per audio, in order (times relative to each audio); ``speech``: one per audio."""
        spans: Sequence[Spans | None] = speech if speech is not None else [None] * len(audios)
        return [
            self.transcribe(a, beam_size=beam_size, initial_prompt=initial_prompt, speech=s)
            for a, s in zip(audios, spans, strict=True)
        ]


def repetition_loop(text: str, *, min_repeats: int, min_words: int, max_ngram: int) -> tuple[str, int] | None:
    """The n-gram ``text`` loops on and how often, if it repeats back to back enough; else None.

    Words are compared case- and punctuation-blind. Only back-to-back repeats
    count: "item 1 ... item 2 ..." repeats words but does not loop.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    for n in range(1, max_ngram + 1):
        for i in range(len(words) - n * min_repeats + 1):
            gram = words[i : i + n]
            copies = 1
            while words[i + copies * n : i + (copies + 1) * n] == gram:
                copies += 1
            if copies >= min_repeats and copies * n >= min_words:
                return " ".join(gram), copies
    return None


def loops(seg: AsrSegment, options: AsrOptions) -> bool:
    """Does ``seg``'s text loop (see :class:`AsrOptions`)?"""
    found = repetition_loop(
        seg.text,
        min_repeats=options.loop_min_repeats,
        min_words=options.loop_min_words,
        max_ngram=options.loop_max_ngram,
    )
    return found is not None


def drop_reason(seg: AsrSegment, options: AsrOptions) -> DropReason | None:
    """Why the hallucination guard drops ``seg``, or None to keep it."""
    if seg.no_speech_prob > options.no_speech_threshold and seg.avg_logprob < options.logprob_threshold:
        return DropReason.NO_SPEECH
    if loops(seg, options):
        return DropReason.REPETITION_LOOP
    if seg.words and max(w.probability for w in seg.words) < options.min_word_probability:
        return DropReason.LOW_CONFIDENCE
    return None


def guard(segments: Iterable[AsrSegment], options: AsrOptions) -> AsrResult:
    """The hallucination guard, the segment filter every decode goes through.

    Keeps what :func:`drop_reason` keeps; every dropped segment is counted and logged.
    """
    result = AsrResult()
    for seg in segments:
        reason = drop_reason(seg, options)
        if reason is None:
            result.append(seg)
            continue
        result.dropped[reason] += 1
        log.info(
            "asr segment dropped",
            extra={
                "reason": reason,
                "start_s": round(seg.start, 2),
                "end_s": round(seg.end, 2),
                "words": len(seg.words),
                "avg_logprob": round(seg.avg_logprob, 3),
            },
        )
    return result


def whisper_segment(seg: WhisperSegment) -> AsrSegment | None:
    """One faster-whisper segment as an :class:`AsrSegment` (None when it has no text)."""
    text = seg.text.strip()
    if not text:
        return None
    return AsrSegment(
        start=float(seg.start),
        end=float(seg.end),
        text=text,
        words=tuple(Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in seg.words or ()),
        avg_logprob=float(seg.avg_logprob),
        no_speech_prob=float(seg.no_speech_prob),
        compression_ratio=float(seg.compression_ratio),
    )


def pick_device(setting: str) -> Device:
    """``auto`` means CUDA when CTranslate2 sees a GPU."""
    if setting != Device.AUTO:
        return Device(setting)
    try:
        import ctranslate2

        return Device.CUDA if ctranslate2.get_cuda_device_count() > 0 else Device.CPU
    except Exception:
        return Device.CPU


class WhisperTranscriber(Transcriber):
    """faster-whisper behind a small, thread-safe ``transcribe`` call."""

    def __init__(
        self,
        model: str = "bundled:tiny.en",
        *,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 2,
        options: AsrOptions | None = None,
        num_workers: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        self.device = pick_device(device)
        if compute_type == "default":
            compute_type = "float16" if self.device == Device.CUDA else "int8"
        path = resolve_model(model)
        self.model_name = model
        self.model = WhisperModel(
            path,
            device=self.device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
        self.options = options or AsrOptions()
        if self.options.language is None and not self.model.model.is_multilingual:
            self.options = replace(self.options, language="en")
        # CTranslate2 models are safe to call from several threads only up to
        # num_workers at once; beyond that calls queue inside CTranslate2.
        self._lock = threading.Semaphore(max(1, num_workers))
        log.info(
            "whisper model loaded",
            extra={"model": model, "device": self.device, "compute_type": compute_type},
        )

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: Spans | None = None,
    ) -> AsrResult:
        """Transcribe float32 16 kHz mono audio; times are relative to ``audio``.

        The result is a list of the segments kept; ``result.dropped`` counts the
        ones the hallucination guard dropped, by reason. With ``speech`` (VAD
        already run) only those spans are decoded, as faster-whisper's own
        ``vad_filter`` would: concatenated, then times mapped back.
        """
        opts = self.options
        beam = beam_size or opts.beam_size
        heard = _Heard.of(audio, speech)
        if heard.chunks == []:
            return AsrResult()  # VAD found no speech: nothing to decode
        with self._lock:
            segments = self._decode(heard, beam, initial_prompt, None)
            if any(loops(s, opts) for s in segments):
                for temperature in opts.loop_temperatures:
                    again = self._decode(heard, beam, initial_prompt, temperature)
                    log.info(
                        "asr loop: decoded again",
                        extra={"temperature": temperature, "loops": sum(loops(s, opts) for s in again)},
                    )
                    if not any(loops(s, opts) for s in again):
                        segments = again
                        break
        return guard(segments, opts)

    def _decode(self, heard: _Heard, beam_size: int, prompt: str | None, temperature: float | None) -> list[AsrSegment]:
        """One faster-whisper pass (``temperature`` None: its default ladder, falling back on low confidence)."""
        from faster_whisper.transcribe import restore_speech_timestamps

        opts = self.options
        extra = {} if temperature is None else {"temperature": temperature}
        segments, _info = self.model.transcribe(
            heard.audio,
            vad_filter=opts.vad_filter and heard.chunks is None,
            vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
            condition_on_previous_text=opts.condition_on_previous_text,
            **opts.decode_kwargs(beam_size, prompt),
            **extra,
        )
        if heard.chunks:
            segments = restore_speech_timestamps(segments, heard.chunks, SAMPLE_RATE)
        return [c for c in map(whisper_segment, segments) if c is not None]


@dataclass(frozen=True)
class _Heard:
    """What one decode hears: all of the audio, or only its speech chunks (faster-whisper's dialect)."""

    audio: np.ndarray
    chunks: list[dict[str, int]] | None = None

    @classmethod
    def of(cls, audio: np.ndarray, speech: Spans | None) -> _Heard:
        if speech is None:
            return cls(audio)
        chunks = [{"start": a, "end": b} for a, b in speech if b > a]
        heard = np.concatenate([audio[a:b] for a, b in speech if b > a]) if chunks else audio[:0]
        return cls(heard, chunks)

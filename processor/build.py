"""The processor's composition root: settings in, :class:`EngineParts` out.

Models are loaded once per process. Every other processor module receives its
collaborators; only this one decides which classes play the parts.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from contracts.settings import Device, DiarizationWeights, Settings, Switch
from processor.asr import AsrOptions, Transcriber, WhisperTranscriber
from processor.batched_asr import BatchingTranscriber
from processor.diarization import Diarization, Diarizer, IdentityMapper, SingleSpeakerDiarizer, SpeakerMapper
from processor.engine import EngineParts, ShardProcessor
from processor.gate import FinalGate, GatedTranscriber
from processor.interim import InterimWorker
from processor.vad import SpeechMap
from processor.windowing import WindowPolicy
from stores.base import TranscriptStore
from stores.factory import session_store, transcript_store, voice_library, window_archive

log = logging.getLogger(__name__)
_lock = threading.Lock()


def quiet_threads() -> None:
    """Keep OpenMP from spinning on a shared 2-core box (measured 4-8x slowdowns).

    torch's thread count is set where torch is needed (the pyannote builder):
    importing torch here cost ``flowbot transcribe`` 2-6 s with diarization off.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


@functools.lru_cache(maxsize=4)
def _transcriber(model: str, device: str, compute_type: str, threads: int, beam: int, lang: str) -> WhisperTranscriber:
    return WhisperTranscriber(
        model,
        device=device,
        compute_type=compute_type,
        cpu_threads=threads,
        options=AsrOptions(beam_size=beam, language=lang or None),
    )


def build_transcriber(settings: Settings) -> WhisperTranscriber:
    """The process-wide Whisper model for these settings."""
    with _lock:
        return _transcriber_for(settings)


def _transcriber_for(settings: Settings) -> WhisperTranscriber:
    return _transcriber(
        settings.asr_model,
        settings.asr_device,
        settings.asr_compute_type,
        settings.cpu_threads,
        settings.asr_beam_size,
        settings.asr_language,
    )


def build_diarizer(settings: Settings) -> Diarizer:
    """The diarizer named by ``FLOWBOT_DIARIZATION``, loaded in the background (:class:`BackgroundDiarizer`).

    What can be checked quickly (settings, installed weights) raises here; the
    rest of the load runs while the caller goes on to load and run the ASR.
    """
    if settings.diarization == DiarizationWeights.NONE:
        return SingleSpeakerDiarizer()
    from processor.pyannote_diarizer import diarizer_loader

    load = diarizer_loader(settings)
    if settings.speaker_turn_check == Switch.OFF:
        return BackgroundDiarizer(load)
    from processor.turn_check import turn_check_of, with_turn_check

    return BackgroundDiarizer(lambda: with_turn_check(load(), turn_check_of(settings)))


class BackgroundDiarizer:
    """A diarizer loaded on its own thread; :meth:`diarize` waits for it.

    Loading the offline pipeline takes ~7.5 s on 2 cores (importing
    pyannote.audio, i.e. torch and lightning, ~6.6 s of it), while ASR of a
    meeting keeps about one core busy: built before the ASR model and in
    parallel with it, the load no longer delays the first window's ASR
    (``flowbot transcribe`` of a 2 min meeting: docs/diarization.md). A failed
    load raises its own exception from :meth:`diarize` and from :meth:`check`,
    which the composition roots poll so that it ends the command as it did when
    the load ran in the foreground.
    """

    def __init__(self, load: Callable[[], Diarizer]) -> None:
        self._loaded: Future[Diarizer] = Future()
        self._thread = threading.Thread(target=self._load, args=(load,), name="diarizer-load", daemon=True)
        self._thread.start()

    def _load(self, load: Callable[[], Diarizer]) -> None:
        try:
            self._loaded.set_result(load())
        except BaseException as exc:  # raised in the callers' threads (diarize, check)
            self._loaded.set_exception(exc)

    def loaded(self) -> Diarizer:
        """The diarizer, once loaded (waits); raises what the load raised."""
        return self._loaded.result()

    def check(self) -> None:
        """Raise what the load raised, if it failed; never waits."""
        if self._loaded.done():
            self._loaded.result()

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """The loaded diarizer's :meth:`~processor.diarization.Diarizer.diarize` (after the load)."""
        return self.loaded().diarize(audio, speech)


def check_loaded(parts: EngineParts, *, wait: bool = False) -> None:
    """Raise the error of a part that failed to load in the background (the diarizer).

    Never waits unless ``wait``: then returns once everything is loaded.
    """
    if isinstance(parts.diarizer, BackgroundDiarizer):
        if wait:
            parts.diarizer.loaded()
        parts.diarizer.check()


def mapper_factory(settings: Settings) -> Callable[[dict[str, object]], SpeakerMapper]:
    """Builds a session speaker registry from its stored state."""
    if settings.diarization == DiarizationWeights.NONE:
        return lambda state: IdentityMapper(state)
    from processor.speakers import build_mapper

    def make(state: dict[str, object]) -> SpeakerMapper:
        return build_mapper(settings, state)

    return make


def use_batching(settings: Settings, device: str) -> bool:
    """Does ``FLOWBOT_ASR_BATCHING`` put ASR passes through :class:`processor.batched_asr.BatchingTranscriber`?"""
    if settings.asr_batching == Switch.AUTO:
        return device == Device.CUDA
    return settings.asr_batching == Switch.ON


@dataclass(frozen=True)
class InterimParts:
    """The engine's transcriber as the engine should call it, and the interim worker (None when off)."""

    transcriber: Transcriber
    worker: InterimWorker | None


def diarization_executor(settings: Settings) -> Executor | None:
    """Where the engine's diarize stage runs: a one-thread pool when there is real diarization.

    With the pool the record thread goes on ingesting (and offering the next
    window to interim captions) while the previous window is diarized; before,
    interim passes for the first seconds of each window waited 4-6 s behind the
    whole final pass (caption p95 7.3-7.8 s). It depends on the diarizer only,
    never on whether captions are on, so captions do not change when windows
    commit. None (inline) for the single-speaker diarizer, which costs nothing.
    """
    if settings.diarization == DiarizationWeights.NONE:
        return None
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="final-diarization")


def build_interim(settings: Settings, whisper: WhisperTranscriber, store: TranscriptStore) -> InterimParts:
    """Wrap the engine's transcriber and build the interim worker for ``settings``.

    The worker is None when ``interim_seconds`` is 0. On CUDA (or with
    ``asr_batching=on``) both the engine and the worker go through one
    :class:`processor.batched_asr.BatchingTranscriber`,
    so final and interim passes of all sessions share batched model calls; on
    CPU final ASR takes priority and interim passes yield to it.
    """
    if settings.interim_seconds <= 0:
        return InterimParts(whisper, None)
    gate = FinalGate()
    if use_batching(settings, whisper.device):
        batched = BatchingTranscriber(whisper)
        worker = InterimWorker(
            batched,
            store,
            interval=settings.interim_seconds,
            gate=gate,
            yield_to_finals=False,
            max_duty=1.0,
            batch_size=batched.max_batch,
        )
        return InterimParts(GatedTranscriber(batched, gate), worker)
    # Final ASR pre-empts interim passes through the gate; the duty cap only keeps a
    # slow model from hogging both cores between finals.
    worker = InterimWorker(whisper, store, interval=settings.interim_seconds, gate=gate, max_duty=0.75)
    return InterimParts(GatedTranscriber(whisper, gate), worker)


def build_engine_parts(settings: Settings) -> EngineParts:
    """Everything the engine needs, from settings."""
    quiet_threads()
    # First, so that its load runs while the ASR model loads and decodes.
    diarizer = build_diarizer(settings)
    store = transcript_store(settings)
    interim = build_interim(settings, build_transcriber(settings), store)
    return EngineParts(
        transcriber=interim.transcriber,
        diarizer=diarizer,
        mapper_factory=mapper_factory(settings),
        store=store,
        archive=window_archive(settings),
        policy=WindowPolicy(settings.window_seconds, settings.window_min_seconds, settings.window_min_silence_ms),
        interim=interim.worker,
        diarization_pool=diarization_executor(settings),
        after_commit=live_voice_naming(settings, store),
    )


def live_voice_naming(settings: Settings, store: TranscriptStore) -> Callable[[str], None] | None:
    """The engine's hook that names speakers by their owners' remembered voices as they are founded."""
    if settings.diarization == DiarizationWeights.NONE or settings.voice_live_naming == Switch.OFF:
        return None
    from processor.live_voices import LiveVoiceNaming
    from stores.voice_naming import Voices

    return LiveVoiceNaming(Voices.from_settings(voice_library(settings), store, settings), session_store(settings))


@functools.lru_cache(maxsize=4)
def _batching(whisper: WhisperTranscriber) -> BatchingTranscriber:
    return BatchingTranscriber(whisper)


def build_file_parts(settings: Settings, parts: EngineParts | None = None) -> EngineParts:
    """Engine parts for a file (``flowbot transcribe``): all its audio is known up front.

    No interim captions (a file has no live viewers). With
    ``transcribe_batch_windows`` above 1, a session's windows are decoded
    ``transcribe_batch_windows`` at a time in one batched model call
    (:class:`processor.batched_asr.BatchingTranscriber`); the cuts, the left
    context and the hallucination guard stay those of the sequential path.
    ``parts`` (models already loaded) are reused when given.
    """
    file_settings = settings.replace(interim_seconds=0.0)
    parts = parts or build_engine_parts(file_settings)
    if settings.transcribe_batch_windows <= 1:
        return parts
    with _lock:
        batched = _batching(_transcriber_for(file_settings))
    return replace(parts, transcriber=batched, batch_windows=settings.transcribe_batch_windows)


def build_shard_processor(settings: Settings, parts: EngineParts | None = None) -> ShardProcessor:
    """A record processor for one shard (the KCL child process calls this).

    Building its own parts, it waits for them all: a KCL child has no command
    loop to raise a background load's error, so it fails here, as it always did.
    """
    if parts is None:
        parts = build_engine_parts(settings)
        check_loaded(parts, wait=True)
    return ShardProcessor(parts)

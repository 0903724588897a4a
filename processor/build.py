"""Wire a shard processor from settings: models are loaded once per process."""

from __future__ import annotations

import functools
import logging
import os
import threading

from contracts.settings import Settings
from processor.asr import AsrOptions, WhisperTranscriber
from processor.diarization import Diarizer, IdentityMapper, SingleSpeakerDiarizer, SpeakerMapper
from processor.engine import EngineParts, ShardProcessor
from processor.interim import build_interim
from processor.windowing import WindowPolicy
from stores.factory import transcript_store, window_archive

log = logging.getLogger(__name__)
_lock = threading.Lock()


def quiet_threads(settings: Settings) -> None:
    """Keep OpenMP from spinning on a shared 2-core box (measured 4-8x slowdowns)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    try:
        import torch

        torch.set_num_threads(max(1, settings.cpu_threads))
    except ImportError:
        pass


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
        return _transcriber(
            settings.asr_model,
            settings.asr_device,
            settings.asr_compute_type,
            settings.cpu_threads,
            settings.asr_beam_size,
            settings.asr_language,
        )


def build_diarizer(settings: Settings) -> Diarizer:
    """The diarizer named by ``FLOWBOT_DIARIZATION``."""
    if settings.diarization == "none":
        return SingleSpeakerDiarizer()
    from processor.pyannote_diarizer import build_diarizer as build_pyannote

    with _lock:
        return build_pyannote(settings)


def mapper_factory(settings: Settings):
    """Builds a session speaker registry from its stored state."""
    if settings.diarization == "none":
        return lambda state: IdentityMapper(state)
    from processor.speakers import build_mapper

    def make(state: dict[str, object]) -> SpeakerMapper:
        return build_mapper(settings, state)

    return make


def build_engine_parts(settings: Settings) -> EngineParts:
    """Everything the engine needs, from settings."""
    quiet_threads(settings)
    store = transcript_store(settings)
    transcriber, diarizer, interim = build_interim(
        settings, build_transcriber(settings), build_diarizer(settings), store
    )
    return EngineParts(
        transcriber=transcriber,
        diarizer=diarizer,
        mapper_factory=mapper_factory(settings),
        store=store,
        archive=window_archive(settings),
        policy=WindowPolicy(settings.window_seconds, settings.window_min_seconds, settings.window_min_silence_ms),
        interim=interim,
    )


def build_shard_processor(settings: Settings, parts: EngineParts | None = None) -> ShardProcessor:
    """A record processor for one shard (the KCL child process calls this)."""
    return ShardProcessor(parts or build_engine_parts(settings))

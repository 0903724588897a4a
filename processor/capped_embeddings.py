"""pyannote's ``SpeakerDiarization`` with an embedding step that costs about one pass over the speech.

pyannote embeds every (chunk, local speaker) pair: with 10 s chunks every
``step`` x 10 s, each second of speech is embedded ``1 / step`` times, and
embeddings were ~95 % of the offline pipeline's time (docs/diarization.md).
:class:`CappedEmbeddingDiarization` keeps every other building block of the
pipeline (segmentation, binarisation, speaker counting, clustering,
reconstruction) and replaces only ``get_embeddings``:

- one Kaldi fbank for the whole window, sliced per chunk (fbank frames are
  local, so the slices equal each chunk's own fbank exactly);
- per (chunk, speaker), at most ``max_seconds`` of the speaker's clean (not
  overlapped) frames, the ones nearest the chunk centre. With a cap no longer
  than the hop between chunks, neighbouring chunks embed different stretches,
  so each second of speech is embedded about once;
- exact-length inputs on onnxruntime (:class:`processor.campplus_onnx.CamPlusPlusOnnx`),
  equal-length inputs batched in one call;
- speakers active for at least ``min_active_ratio`` of the chunk get an
  embedding. pyannote clusters only speakers active >= 20 % of a chunk, then
  assigns every (chunk, speaker) to its nearest centroid; a NaN embedding has no
  nearest centroid and lands in cluster 0, so short turns ("okay.") were
  given to whoever cluster 0 was.

It also overrides ``get_segmentations``: given where the window's VAD heard
speech (``file["speech"]``, the window's one VAD pass), segmentation runs only
on the chunks that hold some; the others are silent (all zeros, what the model
outputs for silence), so they get no embeddings either.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

import numpy as np
import torch
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import SlidingWindow, SlidingWindowFeature

from processor.campplus import FRAME_SHIFT_S, HOP_SAMPLES, WINDOW_SAMPLES, fbank

#: Fewer fbank frames than this (0.5 s) make no embedding (3D-Speaker's own minimum is similar).
MIN_FRAMES = 50


class SpeakerEmbedder(Protocol):
    """Speaker embeddings of mean-normalised fbank frames."""

    dimension: int

    def embed(self, feats: np.ndarray) -> np.ndarray:
        """(batch, frames, 80) float32 -> (batch, dimension)."""


class TorchCamPlusPlus:
    """The PyTorch CAM++ network behind :class:`SpeakerEmbedder` (for CUDA, and to check the ONNX export)."""

    def __init__(self, network: torch.nn.Module, device: torch.device | None = None) -> None:
        self.network = network.eval()
        self.device = device or torch.device("cpu")
        self.network.to(self.device)
        self.dimension = 192

    def embed(self, feats: np.ndarray) -> np.ndarray:
        """(batch, frames, 80) float32 -> (batch, 192)."""
        with torch.inference_mode():
            out: np.ndarray = self.network(torch.from_numpy(feats).to(self.device)).cpu().numpy()
        return out


def select_frames(mask: np.ndarray, num_fbank_frames: int, max_frames: int) -> np.ndarray:
    """Fbank frame indices where ``mask`` (segmentation frames) is on, at most ``max_frames`` nearest the centre.

    The segmentation mask is resampled to the fbank rate by nearest neighbour,
    as pyannote does for its own embedding models.
    """
    source = (np.arange(num_fbank_frames) * len(mask)) // num_fbank_frames
    on = np.flatnonzero(mask[source] > 0.5)
    if len(on) > max_frames:
        nearest = np.argsort(np.abs(on - (num_fbank_frames - 1) / 2), kind="stable")[:max_frames]
        on = np.sort(on[nearest])
    return on


class CappedEmbeddingDiarization(SpeakerDiarization):
    """``SpeakerDiarization`` whose ``get_embeddings`` embeds each second of speech about once (module docstring)."""

    def __init__(
        self,
        *,
        embedder: SpeakerEmbedder,
        max_seconds: float | None = None,
        min_active_ratio: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedder = embedder
        # Default: the hop between chunks, so that neighbouring chunks embed different stretches.
        seconds = self._segmentation.step if max_seconds is None else max_seconds
        self.max_frames = max(MIN_FRAMES, round(seconds / FRAME_SHIFT_S))
        self.min_active_ratio = min_active_ratio
        #: Segmentation chunks seen and skipped as silent by the VAD (for bench/diarization.py).
        self.chunks = {"total": 0, "skipped": 0}

    def get_segmentations(self, file: Any, hook: Any = None) -> SlidingWindowFeature:
        """pyannote's segmentation, run only on the chunks that overlap ``file["speech"]`` (sample spans).

        The chunks are pyannote's own (``Inference.slide``: every ``step``, the
        last one zero-padded); a skipped chunk is all zeros. Without
        ``file["speech"]``, or when every chunk holds speech, it is pyannote's call.
        """
        speech = file.get("speech")
        if speech is None or self.training:
            return super().get_segmentations(file, hook)
        inference = self._segmentation
        waveform, sample_rate = inference.model.audio(file)
        size = inference.model.audio.get_num_samples(inference.duration)
        step = round(inference.step * sample_rate)
        samples = waveform.shape[1]
        full = (samples - size) // step + 1 if samples >= size else 0
        starts = [c * step for c in range(full)]
        if samples < size or (samples - size) % step > 0:
            starts.append(full * step)
        keep = [c for c, at in enumerate(starts) if any(lo < at + size and hi > at for lo, hi in speech)]
        self.chunks["total"] += len(starts)
        self.chunks["skipped"] += len(starts) - len(keep)
        if len(keep) == len(starts):
            return super().get_segmentations(file, hook)
        chunks = [waveform[:, starts[c] : starts[c] + size] for c in keep]
        batch = torch.stack([torch.nn.functional.pad(x, (0, size - x.shape[1])) for x in chunks])
        outputs = np.vstack(
            [inference.infer(batch[i : i + inference.batch_size]) for i in range(0, len(batch), inference.batch_size)]
        )
        data = np.zeros((len(starts), *outputs.shape[1:]), dtype=outputs.dtype)
        data[keep] = outputs
        return SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=inference.duration, step=inference.step))

    def get_embeddings(
        self,
        file: Any,
        binary_segmentations: SlidingWindowFeature,
        exclude_overlap: bool = False,
        hook: Any = None,
    ) -> np.ndarray:
        """(num_chunks, num_speakers, dimension) embeddings; NaN where a speaker is (nearly) silent."""
        window = binary_segmentations.sliding_window
        masks = np.nan_to_num(binary_segmentations.data, nan=0.0)
        num_chunks, num_frames, num_speakers = masks.shape
        sample_rate = self._embedding.sample_rate
        chunk_samples = round(window.duration * sample_rate)
        chunk_fbank = (chunk_samples - WINDOW_SAMPLES) // HOP_SAMPLES + 1
        starts = [round((window.start + c * window.step) * sample_rate) // HOP_SAMPLES for c in range(num_chunks)]

        waveform = file["waveform"][:1].float()
        # The last chunk reaches past the audio; pyannote zero-pads it, so do we.
        needed = starts[-1] * HOP_SAMPLES + chunk_samples
        if waveform.shape[1] < needed:
            waveform = torch.nn.functional.pad(waveform, (0, needed - waveform.shape[1]))
        feats = fbank(waveform.cpu(), sample_rate).numpy()

        clean = masks * (masks.sum(axis=2, keepdims=True) < 2)
        # pyannote's rule: the clean (not overlapped) frames when they span at least one
        # fbank window, else the whole mask.
        min_clean = -(-num_frames * WINDOW_SAMPLES // chunk_samples)
        min_on = self.min_active_ratio * num_frames
        inputs: dict[int, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
        for c in range(num_chunks):
            for s in range(num_speakers):
                use_clean = exclude_overlap and clean[c, :, s].sum() > min_clean
                mask = clean[c, :, s] if use_clean else masks[c, :, s]
                if mask.sum() < min_on:
                    continue
                frames = select_frames(mask, chunk_fbank, self.max_frames)
                if len(frames) < MIN_FRAMES:
                    continue
                selected = feats[starts[c] + frames]
                inputs[len(frames)].append((c, s, selected - selected.mean(axis=0, keepdims=True)))

        out = np.full((num_chunks, num_speakers, self.embedder.dimension), np.nan, dtype=np.float32)
        for group in inputs.values():
            vectors = self.embedder.embed(np.stack([x for _, _, x in group]))
            for (c, s, _), vector in zip(group, vectors, strict=True):
                out[c, s] = vector
        return out

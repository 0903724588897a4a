"""The capped embedding step: exact inputs, one pass over the speech, and what it costs in CAM++ work."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from contracts.settings import Settings, SettingsError
from processor.campplus import CAMPPlus, fbank
from processor.capped_embeddings import MIN_FRAMES, CappedEmbeddingDiarization, select_frames
from processor.pyannote_diarizer import OfflineParams, PyannoteDiarizer, build_diarizer, build_offline_pipeline
from tests.diarization.real_sample import pyannote_sample


def test_select_frames_resamples_the_mask_and_keeps_the_centre() -> None:
    mask = np.zeros(589)
    mask[100:500] = 1.0  # ~6.8 s of the 10 s chunk
    every = select_frames(mask, 998, max_frames=1000)
    assert every[0] == (100 * 998 + 588) // 589 and len(every) == pytest.approx(400 * 998 / 589, abs=2)
    capped = select_frames(mask, 998, max_frames=300)
    assert len(capped) == 300
    assert np.all(np.diff(capped) > 0)  # time order kept
    assert set(capped) <= set(every)
    assert abs(capped.mean() - 498.5) < 2  # centred on the chunk centre
    # A speaker talking only early in the chunk keeps its frames nearest the centre.
    early = np.zeros(589)
    early[:200] = 1.0
    picked = select_frames(early, 998, max_frames=100)
    assert picked[-1] == select_frames(early, 998, max_frames=1000)[-1]


def test_window_fbank_slices_equal_each_chunks_own_fbank() -> None:
    """Fbank frames are local, so one fbank per window serves every chunk exactly (5 s hop)."""
    rng = np.random.default_rng(0)
    window = torch.from_numpy(rng.normal(scale=0.1, size=(1, 25 * 16_000)).astype(np.float32))
    whole = fbank(window)
    for start_s in (0, 5, 10, 15):
        chunk = fbank(window[:, start_s * 16_000 : (start_s + 10) * 16_000])
        assert torch.equal(whole[start_s * 100 : start_s * 100 + chunk.shape[0]], chunk)


@pytest.mark.parametrize("step", [0.0, 1.5, -0.2])
def test_out_of_range_step_is_a_settings_error(step: float) -> None:
    with pytest.raises(SettingsError, match=r"FLOWBOT_DIARIZATION_STEP.*segmentation_step must be in"):
        build_diarizer(Settings.from_env({"FLOWBOT_DIARIZATION_STEP": str(step)}, diarization="offline"))


class RecordingEmbedder:
    """Wraps the real embedder and keeps every input it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.inputs: list[np.ndarray] = []

    def embed(self, feats: np.ndarray) -> np.ndarray:
        self.inputs.extend(feats)
        out: np.ndarray = self.inner.embed(feats)
        return out


@pytest.fixture(scope="module")
def capped() -> Iterator[CappedEmbeddingDiarization]:
    from artefacts import DIARIZATION_OFFLINE, locate

    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = build_offline_pipeline(locate(DIARIZATION_OFFLINE), OfflineParams(), threads=2)
    assert isinstance(pipeline, CappedEmbeddingDiarization)
    yield pipeline


@pytest.mark.slow
def test_each_embedding_input_is_the_chunks_own_fbank_capped_at_one_hop(capped: CappedEmbeddingDiarization) -> None:
    audio, _ = pyannote_sample()
    recorder = RecordingEmbedder(capped.embedder)
    capped.embedder = recorder
    try:
        waveform = torch.from_numpy(audio)[None]
        file = {"waveform": waveform, "sample_rate": 16_000, "uri": "sample"}
        segmentations = capped.get_segmentations(file)
        embeddings = capped.get_embeddings(file, segmentations, exclude_overlap=True)
    finally:
        capped.embedder = recorder.inner
    chunks, _, speakers = segmentations.data.shape
    assert embeddings.shape == (chunks, speakers, 192)
    hop_frames = round(segmentations.sliding_window.step * 100)
    assert capped.max_frames == hop_frames == 500
    assert recorder.inputs and all(MIN_FRAMES <= len(x) <= hop_frames for x in recorder.inputs)
    valid = ~np.isnan(embeddings).any(axis=2)
    assert valid.sum() == len(recorder.inputs)
    # Silent local speakers get no embedding.
    active = np.nan_to_num(segmentations.data).sum(axis=1) > 0
    assert not (valid & ~active).any()
    # Each input equals the chunk's own fbank at the selected frames, mean-normalised.
    c, s = map(int, np.argwhere(valid)[0])
    start = round(c * segmentations.sliding_window.step * 16_000)
    own = fbank(waveform[:, start : start + 160_000]).numpy()
    masks = np.nan_to_num(segmentations.data[c])
    clean = masks[:, s] * (masks.sum(axis=1) < 2)
    picked = own[select_frames(clean, own.shape[0], capped.max_frames)]
    expected = picked - picked.mean(axis=0, keepdims=True)
    assert any(x.shape == expected.shape and np.allclose(x, expected, atol=1e-5) for x in recorder.inputs)


def _count_campplus_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Frames fed to CAM++, whichever runtime runs it (PyTorch module or onnxruntime session)."""
    import onnxruntime

    seen: list[int] = []
    forward = CAMPPlus.forward

    def torch_forward(self: CAMPPlus, feats: torch.Tensor) -> torch.Tensor:
        seen.append(int(feats.shape[0] * feats.shape[1]))
        return forward(self, feats)

    run = onnxruntime.InferenceSession.run

    def ort_run(self: Any, output_names: Any, feed: dict[str, np.ndarray], *args: Any) -> Any:
        feats = feed.get("feats")
        if feats is not None:
            seen.append(int(feats.shape[0] * feats.shape[1]))
        return run(self, output_names, feed, *args)

    monkeypatch.setattr(CAMPPlus, "forward", torch_forward)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", ort_run)
    return seen


@pytest.mark.slow
def test_default_diarizer_embeds_each_second_of_speech_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: the offline default fed CAM++ ~6 frames per frame of audio (5 overlapping chunks,
    every input tiled to 10 s); embeddings were ~95 % of diarization's CPU time."""
    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diarizer = build_diarizer(Settings.from_env({}, diarization="offline", diarization_device="cpu"))
    assert isinstance(diarizer, PyannoteDiarizer)
    audio, _ = pyannote_sample()
    seen = _count_campplus_frames(monkeypatch)
    diarizer.diarize(audio)
    audio_frames = len(audio) // 160
    assert seen, "CAM++ never ran"
    assert sum(seen) <= 1.25 * audio_frames, f"{sum(seen)} CAM++ frames for {audio_frames} frames of audio"


def test_loading_the_cpu_diarizer_runs_no_campplus_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 cost: the load warmed up the PyTorch CAM++ (one 10 s forward pass, ~0.25 CPU s of
    every ``flowbot transcribe``'s load) that the CPU pipeline never runs (onnxruntime embeds)."""
    seen = _count_campplus_frames(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diarizer = build_diarizer(Settings.from_env({}, diarization="offline", diarization_device="cpu"))
    assert isinstance(diarizer, PyannoteDiarizer)
    assert seen == [], f"CAM++ ran on {seen} frames while loading"


@pytest.mark.slow
def test_segmentation_skips_the_chunks_the_windows_vad_found_silent() -> None:
    """Issue 22: the window's one VAD pass tells the diarizer where nobody speaks; the chunks there are
    not segmented (nor embedded), and the turns are those of the full pass."""
    from processor.vad import SpeechMap

    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diarizer = build_diarizer(Settings.from_env({}, diarization="offline", diarization_device="cpu"))
    assert isinstance(diarizer, PyannoteDiarizer)
    pipeline = diarizer.pipeline
    assert isinstance(pipeline, CappedEmbeddingDiarization)
    audio, _ = pyannote_sample()
    sr = 16_000
    window = np.concatenate([audio[: 8 * sr], np.zeros(14 * sr, np.float32), audio[20 * sr : 28 * sr]])
    every = diarizer.diarize(window)
    before = dict(pipeline.chunks)
    gated = diarizer.diarize(window, SpeechMap.of(window))
    assert pipeline.chunks["total"] - before["total"] == 5  # 30 s: chunks at 0, 5, ..., 20 s
    assert pipeline.chunks["skipped"] - before["skipped"] == 1  # 10-20 s holds no speech
    assert gated.turns == every.turns and gated.speech_turns == every.speech_turns
    assert set(gated.embeddings) == set(every.embeddings)
    # No speech at all: nothing to diarize.
    silent = np.zeros(10 * sr, np.float32)
    assert diarizer.diarize(silent, SpeechMap.of(silent)).turns == ()

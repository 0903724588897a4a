"""CAM++ exported to ONNX at install time: same embeddings as PyTorch, reproducible, refused when foreign."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from artefacts import CAMPPLUS, DIARIZATION_OFFLINE, ArtefactError, locate
from processor.campplus import CamPlusPlusEmbedding, fbank
from processor.campplus_onnx import ONNX_NAME, SOURCE_KEY, CamPlusPlusOnnx, export, onnx_sha256
from tests.diarization.real_sample import pyannote_sample


def _real_inputs() -> np.ndarray:
    """Mean-normalised fbank of three stretches of pyannote's real sample (3 s each)."""
    audio, _ = pyannote_sample()
    feats = fbank(torch.from_numpy(audio)[None]).numpy()
    pieces = [feats[start : start + 300] for start in (700, 1500, 2400)]
    return np.stack([p - p.mean(axis=0, keepdims=True) for p in pieces])


def test_installed_onnx_matches_pytorch_on_real_speech() -> None:
    folder = locate(DIARIZATION_OFFLINE)
    onnx_model = CamPlusPlusOnnx(folder / ONNX_NAME, threads=2)
    network = CamPlusPlusEmbedding.from_state_dict_file(folder / CAMPPLUS.name).campplus
    feats = _real_inputs()
    with torch.inference_mode():
        expected = network(torch.from_numpy(feats)).numpy()
    got = onnx_model.embed(feats)
    assert got.shape == (3, 192)
    assert np.abs(got - expected).max() < 1e-3
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.99999
    # Any length runs (the capped step feeds exact lengths); one row per batch item.
    assert onnx_model.embed(feats[:1, :57]).shape == (1, 192)


@pytest.mark.slow
def test_export_is_reproducible_and_checked(tmp_path: Path) -> None:
    installed = locate(DIARIZATION_OFFLINE)
    digests = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(installed / CAMPPLUS.name, folder / CAMPPLUS.name)
        digests.append(onnx_sha256(export(folder)))
    assert digests[0] == digests[1]
    # Same torch, same weights: the install-time file is byte for byte what export writes.
    assert digests[0] == onnx_sha256(installed / ONNX_NAME)


def test_onnx_from_other_weights_or_unreadable_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(locate(DIARIZATION_OFFLINE) / ONNX_NAME))
    for entry in model.metadata_props:
        if entry.key == SOURCE_KEY:
            entry.value = "0" * 64
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(ArtefactError, match="not exported from the pinned"):
        CamPlusPlusOnnx(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ArtefactError, match="cannot be loaded"):
        CamPlusPlusOnnx(garbage)
    with pytest.raises(ArtefactError, match="python -m artefacts fetch diarization-offline"):
        CamPlusPlusOnnx(tmp_path / "missing.onnx")

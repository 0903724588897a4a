"""The ``diarization=pyannote`` branch loads a published-style pipeline folder as pyannote does.

The folder is laid out like ``pyannote/speaker-diarization-community-1``
(``config.yaml`` naming ``$model/segmentation``, ``$model/embedding`` and
``$model/plda``; VBx clustering) but holds small randomly initialised
checkpoints of the same architecture classes (PyanNet, WeSpeakerResNet34, a
PLDA), written in pyannote's own checkpoint format. Nothing touches the hub.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contracts.settings import Settings
from processor.diarization import Diarization
from processor.pyannote_diarizer import (
    DiarizationUnavailable,
    PyannoteDiarizer,
    build_diarizer,
    resolve_published,
)

CONFIG = """\
dependencies:
  pyannote.audio: 4.0.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    embedding: $model/embedding
    embedding_batch_size: 4
    embedding_exclude_overlap: true
    plda: $model/plda
    segmentation: $model/segmentation
    segmentation_batch_size: 4
params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def _save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Write a checkpoint the way pyannote/lightning do (``on_save_checkpoint`` fills the rest)."""
    import lightning

    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, object] = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),  # type: ignore[arg-type]
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(ckpt)  # type: ignore[operator]
    torch.save(ckpt, path)


@pytest.fixture(scope="module")
def published_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A community-1-shaped pipeline folder with random weights."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("published")
    seg = PyanNet(
        lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True}, linear={"hidden_size": 16, "num_layers": 1}
    )
    seg.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    seg.build()
    _save_checkpoint(seg, root / "segmentation" / "pytorch_model.bin")

    emb = WeSpeakerResNet34()
    emb.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0)
    _save_checkpoint(emb, root / "embedding" / "pytorch_model.bin")

    rng = np.random.default_rng(0)
    dim, lda = 256, 128
    (root / "plda").mkdir()
    np.savez(
        root / "plda" / "xvec_transform.npz",
        mean1=rng.normal(size=dim),
        mean2=rng.normal(size=lda),
        lda=rng.normal(size=(dim, lda)) / np.sqrt(dim),
    )
    q, _ = np.linalg.qr(rng.normal(size=(lda, lda)))
    np.savez(
        root / "plda" / "plda.npz",
        mu=rng.normal(size=lda) * 0.1,
        tr=q,
        psi=rng.uniform(0.5, 2.0, size=lda),
    )
    (root / "config.yaml").write_text(textwrap.dedent(CONFIG))
    return root


@pytest.fixture(scope="module")
def speechy_audio() -> np.ndarray:
    """12 s of two alternating tone-modulated noise 'voices' (content is irrelevant here)."""
    rng = np.random.default_rng(1)
    t = np.arange(12 * 16000) / 16000
    voice_a = np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    voice_b = np.sin(2 * np.pi * 230 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    mix = np.where((t // 3) % 2 == 0, voice_a, voice_b) + 0.01 * rng.normal(size=t.size)
    return (0.3 * mix).astype(np.float32)


@pytest.mark.slow
def test_pyannote_branch_loads_local_published_folder(published_folder: Path, speechy_audio: np.ndarray) -> None:
    from pyannote.audio import Pipeline
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet
    from pyannote.audio.pipelines import SpeakerDiarization

    settings = Settings.from_env(
        {},
        diarization="pyannote",
        diarization_pipeline=str(published_folder),
        diarization_device="cpu",
    )
    diarizer = build_diarizer(settings)
    assert isinstance(diarizer, PyannoteDiarizer)
    pipeline = diarizer.pipeline
    assert isinstance(pipeline, SpeakerDiarization)
    assert pipeline.klustering == "VBxClustering"
    seg_model = pipeline._segmentation.model
    assert isinstance(seg_model, PyanNet) and seg_model.hparams["lstm"]["hidden_size"] == 16
    emb_model = pipeline._embedding.model_
    assert isinstance(emb_model, WeSpeakerResNet34)
    # The weights are the ones written to the folder, not anyone else's.
    saved = torch.load(published_folder / "embedding" / "pytorch_model.bin", weights_only=False)
    key = "resnet.conv1.weight"
    assert torch.equal(emb_model.state_dict()[key].cpu(), saved["state_dict"][key])
    assert pipeline._plda is not None and pipeline._plda.lda_dimension == 128

    result = diarizer.diarize(speechy_audio)
    assert isinstance(result, Diarization)
    # Same answer as pyannote's own loader called directly on the same folder.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = Pipeline.from_pretrained(str(published_folder))
        assert direct is not None
        out: Any = direct({"waveform": torch.from_numpy(speechy_audio)[None], "sample_rate": 16000})
    expected = [
        (round(s.start, 3), round(s.end, 3), str(lab))
        for s, _, lab in out.exclusive_speaker_diarization.itertracks(yield_label=True)
    ]
    assert sorted((t.start, t.end, t.speaker) for t in result.turns) == sorted(expected)
    for turn in result.turns:
        assert 0.0 <= turn.start < turn.end <= 12.0 + 1e-6
    # Embeddings follow the full (overlapping) diarization's labels, a superset.
    assert {t.speaker for t in result.turns} <= set(result.embeddings)
    assert all(e.shape == (256,) for e in result.embeddings.values())


def test_hub_name_never_downloads_at_run_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(DiarizationUnavailable, match="never downloads at run time"):
        resolve_published("pyannote/speaker-diarization-community-1", token="hf_fake")


def test_bad_audio_gets_a_clear_error(published_folder: Path) -> None:
    settings = Settings.from_env({}, diarization="pyannote", diarization_pipeline=str(published_folder))
    diarizer = build_diarizer(settings)
    with pytest.raises(ValueError, match="mono"):
        diarizer.diarize(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        diarizer.diarize(np.zeros(16000, dtype=np.int16))
    assert diarizer.diarize(np.zeros(4000, dtype=np.float32)).turns == ()

"""Diarization fixtures: generated multi-speaker recordings and one offline diarizer per run.

Recordings are cached under pytest's cache folder (``.pytest_cache``, never in
git) so a re-run skips flite. The offline diarizer needs the weights that
``scripts/setup.d/20-diarization.sh`` installs; without them it fails loudly
(no skip), in CI and locally.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.diarization.conversations import Recording, make_conversation


@pytest.fixture(scope="session")
def diar_cache(request: pytest.FixtureRequest) -> Path:
    """Folder for generated audio that survives between runs (outside git)."""
    return Path(request.config.cache.mkdir("flowbot-diarization"))


@pytest.fixture(scope="session")
def offline_diarizer() -> Iterator[object]:
    """The default offline pyannote pipeline (segmentation-3.0 + CAM++), loaded once."""
    import torch

    from contracts.settings import Settings
    from processor.pyannote_diarizer import build_diarizer

    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield build_diarizer(Settings.from_env({}, diarization="offline"))


@pytest.fixture(scope="session")
def two_speakers(diar_cache: Path) -> Recording:
    """About 3 minutes, 2 voices."""
    return make_conversation(2, 3, diar_cache, seed=1)


@pytest.fixture(scope="session")
def three_speakers(diar_cache: Path) -> Recording:
    """About 3 minutes, 3 voices."""
    return make_conversation(3, 3, diar_cache, seed=2)


@pytest.fixture(scope="session")
def four_speakers(diar_cache: Path) -> Recording:
    """About 3 minutes, 4 voices; the fourth first speaks after minute 1."""
    return make_conversation(4, 3, diar_cache, seed=3, late_joiner=True)

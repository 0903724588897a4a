"""Real-speech fixtures: the development set, and each recording run once through the pipeline.

The recordings are built from registry packages into pytest's cache folder
(``.pytest_cache``, never in git); the first run downloads pocketsphinx's sdist
(34 MB). Pipeline runs use the defaults a user gets (tiny.en, offline pyannote
diarization, 30 s windows) and are shared by the tests of one session.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from contracts.settings import Settings
from processor.diarization import Diarization
from processor.engine import EngineParts
from testkit.corpus import Recording, build
from testkit.evaluate import Run, run_live_and_final, whole_file_asr, whole_file_diarization, whole_file_run


@pytest.fixture(scope="session")
def recordings(request: pytest.FixtureRequest) -> dict[str, Recording]:
    """The development set (see testkit/corpus.py)."""
    return build(Path(request.config.cache.mkdir("flowbot-realspeech")))


@pytest.fixture(scope="session")
def realspeech_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings with diarization on, in a folder of their own."""
    return Settings.from_env(
        {}, data_dir=tmp_path_factory.mktemp("realspeech"), diarization="offline", interim_seconds=0.0
    )


@pytest.fixture(scope="session")
def engine_parts(realspeech_settings: Settings) -> Iterator[EngineParts]:
    """Models loaded once for every pipeline run of the session."""
    from processor.build import build_engine_parts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield build_engine_parts(realspeech_settings)


@pytest.fixture(scope="session")
def live_and_final_runs(
    recordings: dict[str, Recording], realspeech_settings: Settings, engine_parts: EngineParts
) -> dict[str, tuple[Run, Run]]:
    """Each recording through the pipeline (windows, diarization, store): the labels as
    they were live, and the final ones after the end-of-meeting reconciliation."""
    return {name: run_live_and_final(rec, realspeech_settings, engine_parts) for name, rec in recordings.items()}


@pytest.fixture(scope="session")
def pipeline_runs(live_and_final_runs: dict[str, tuple[Run, Run]]) -> dict[str, Run]:
    """Each recording as ``flowbot transcribe`` leaves it (final, reconciled labels)."""
    return {name: final for name, (_, final) in live_and_final_runs.items()}


@pytest.fixture(scope="session")
def whole_file_diarizations(recordings: dict[str, Recording], engine_parts: EngineParts) -> dict[str, Diarization]:
    """Each recording through pyannote in one call (same pipeline as the windows)."""
    return {name: whole_file_diarization(rec, engine_parts.diarizer) for name, rec in recordings.items()}


@pytest.fixture(scope="session")
def whole_file_runs(recordings: dict[str, Recording], engine_parts: EngineParts) -> dict[str, Run]:
    """Each recording through faster-whisper in one call (same model and options)."""
    return {name: whole_file_run(whole_file_asr(rec, engine_parts.transcriber)) for name, rec in recordings.items()}

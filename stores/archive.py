"""Window audio archive: every processed window's audio is kept, so a session can
be re-transcribed later. Keys are ``sessions/<session>/windows/<n>.flac``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from contracts.frames import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np


def window_key(session_id: str, window_index: int) -> str:
    """Archive key of one window's audio."""
    return f"sessions/{session_id}/windows/{window_index:06d}.flac"


def encode_flac(pcm: np.ndarray) -> bytes:
    """int16 mono 16 kHz PCM -> FLAC bytes (lossless, about half the size)."""
    # Imported here so the coordinator Lambda bundle (which never encodes audio) stays small.
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode_flac(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_flac`."""
    import av
    import numpy as np

    with av.open(io.BytesIO(data), "r") as inp:
        chunks = [f.to_ndarray().reshape(-1) for f in inp.decode(audio=0)]
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


class WindowArchive(Protocol):
    """Stores window audio and returns a URI the transcript rows point at."""

    def put(self, session_id: str, window_index: int, pcm: np.ndarray) -> str:
        """Store the window audio (idempotent: same key on replay)."""

    def get(self, uri: str) -> np.ndarray:
        """Read archived audio back."""


class LocalArchive:
    """Archive in a folder (single-machine mode)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, session_id: str, window_index: int, pcm: np.ndarray) -> str:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        path = self.root / window_key(session_id, window_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(encode_flac(pcm))
        tmp.replace(path)
        return path.resolve().as_uri()

    def get(self, uri: str) -> np.ndarray:
        """Read a ``file://`` URI written by :meth:`put`."""
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return decode_flac(Path(url2pathname(urlparse(uri).path)).read_bytes())


class NoArchive:
    """Archiving switched off (``FLOWBOT_ARCHIVE=none``)."""

    def put(self, session_id: str, window_index: int, pcm: np.ndarray) -> str:
        """Store nothing."""
        return ""

    def get(self, uri: str) -> np.ndarray:
        """Nothing was stored."""
        raise FileNotFoundError("archiving is off")

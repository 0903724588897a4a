"""Real recorded speech with known speakers, from registry packages (kept out of git).

- pyannote.audio's own ``sample.wav`` (30 s telephone call, 2 speakers, overlap and
  back-to-back turns) with its ``sample.rttm``;
- conversations assembled from the recordings in pocketsphinx 5.1.1's sdist
  (``pip download --no-deps --no-binary pocketsphinx pocketsphinx==5.1.1`` into a
  cache, sha256-pinned): five voices - a LibriVox reader, the "cards" and "forever"
  test speakers, the speaker of goforward/numbers/something/dhd, and ``chan3``.
  CAM++ puts every file of one voice within 0.3 cosine distance and the voices
  0.6-1.1 apart, so the grouping below is the speaker truth.

Utterances are placed one after another with 0.3-0.8 s pauses, never the same voice
twice in a row; a reference turn is each Silero VAD speech span of an utterance
(``min_silence_duration_ms=300``, ``speech_pad_ms=50``), so pauses inside a long
utterance are not counted as speech.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16_000
SDIST = "pocketsphinx-5.1.1.tar.gz"
SDIST_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
PREFIX = "pocketsphinx-5.1.1/"

VOICES: dict[str, tuple[str, ...]] = {
    "reader": tuple(
        f"test/data/librivox/sense_and_sensibility_01_austen_64kb-{n}.wav"
        for n in ("0870", "0880", "0890", "0920", "0930")
    ),
    "cards": tuple(f"test/data/cards/00{n}.wav" for n in range(1, 6)),
    "forever": ("test/data/forever/input_2_16k.wav", "test/data/forever/input_4_16k.wav"),
    "dhd": (
        "test/data/goforward.raw",
        "test/data/numbers.raw",
        "test/data/something.raw",
        "test/data/tidigits/dhd.2934z.raw",
    ),
    "chan3": ("test/regression/chan3.wav",),
}

#: The conversations of the real-speech set: (voices, seed). Two orders of all five voices
#: (4-5 voices per 30 s window, 1-7 s turns) and two three-voice meetings.
CONVERSATIONS: tuple[tuple[tuple[str, ...], int], ...] = (
    (tuple(VOICES), 0),
    (tuple(VOICES), 1),
    (("reader", "chan3", "dhd"), 0),
    (("cards", "forever", "reader"), 0),
)


@dataclass(frozen=True)
class RealRecording:
    """Audio (float32, 16 kHz mono) with reference turns (start, end, speaker) in seconds."""

    name: str
    audio: np.ndarray
    turns: tuple[tuple[float, float, str], ...]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / SR


def pyannote_sample() -> RealRecording:
    """pyannote.audio's ``sample.wav`` and the turns of its ``sample.rttm``."""
    from tests.diarization.real_sample import pyannote_sample as load

    audio, turns = load()
    return RealRecording("pyannote-sample", audio, turns)


def pocketsphinx_data(cache: Path) -> Path:
    """Folder holding the sdist's recordings, downloaded and extracted once into ``cache``."""
    root = cache / PREFIX.rstrip("/")
    wanted = [f for files in VOICES.values() for f in files]
    if all((root / f).exists() for f in wanted):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                "pocketsphinx",
                "-q",
                "-d",
                str(cache),
                "pocketsphinx==5.1.1",
            ],
            check=True,
        )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{sdist} has sha256 {digest}, expected {SDIST_SHA256}")
    with tarfile.open(sdist) as tar:
        members = [tar.getmember(PREFIX + f) for f in wanted]
        tar.extractall(cache, members=members, filter="data")
    return root


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".raw":  # headerless 16 kHz 16-bit mono
        return np.fromfile(path, "<i2").astype(np.float32) / 32768.0
    from producer.decode import read_pcm

    return read_pcm(str(path)).astype(np.float32) / 32768.0  # resamples chan3's 11.025 kHz


def _speech_spans(audio: np.ndarray) -> list[tuple[int, int]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300, speech_pad_ms=50))
    return [(s["start"], s["end"]) for s in spans]


def _utterances(root: Path, voices: tuple[str, ...]) -> list[tuple[str, np.ndarray, list[tuple[int, int]]]]:
    """(voice, audio, speech spans) per utterance; long recordings split at pauses into <= 8 s pieces."""
    out = []
    for voice in voices:
        for rel in VOICES[voice]:
            audio = _read(root / rel)
            pieces: list[list[tuple[int, int]]] = []
            for start, end in _speech_spans(audio):
                if not pieces or end - pieces[-1][0][0] > 8 * SR:
                    pieces.append([])
                pieces[-1].append((start, end))
            for piece in pieces:
                first, last = piece[0][0], piece[-1][1]
                out.append((voice, audio[first:last], [(s - first, e - first) for s, e in piece]))
    return out


def conversation(root: Path, voices: tuple[str, ...], seed: int) -> RealRecording:
    """The recordings of ``voices`` as one conversation (module docstring)."""
    rng = np.random.default_rng(seed)
    utterances = _utterances(root, voices)
    if seed:
        order = rng.permutation(len(utterances))
        utterances = [utterances[i] for i in order]
    pools: dict[str, list[tuple[np.ndarray, list[tuple[int, int]]]]] = {}
    for voice, audio, spans in utterances:
        pools.setdefault(voice, []).append((audio, spans))
    parts = [np.zeros(SR // 2, np.float32)]
    t = SR // 2
    turns: list[tuple[float, float, str]] = []
    previous = None
    while any(pools.values()):
        candidates = [v for v, p in pools.items() if p and v != previous] or [v for v, p in pools.items() if p]
        weights = np.array([len(pools[v]) for v in candidates], dtype=float)
        voice = candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]
        audio, spans = pools[voice].pop(0)
        turns += [(round((t + s) / SR, 3), round((t + e) / SR, 3), voice) for s, e in spans]
        gap = int(rng.uniform(0.3, 0.8) * SR)
        parts += [audio, np.zeros(gap, np.float32)]
        t += len(audio) + gap
        previous = voice
    name = f"pocketsphinx-{len(voices)}voices-{''.join(v[0] for v in voices)}-s{seed}"
    return RealRecording(name, np.concatenate(parts), tuple(turns))


def real_speech_set(cache: Path) -> list[RealRecording]:
    """pyannote's sample plus :data:`CONVERSATIONS`."""
    root = pocketsphinx_data(cache)
    return [pyannote_sample(), *(conversation(root, voices, seed) for voices, seed in CONVERSATIONS)]

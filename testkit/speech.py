"""Test speech made on the spot with Debian's flite (distinct voices), never stored in git."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from producer.decode import read_pcm

VOICES = ("slt", "awb", "rms", "kal16")

#: A planning meeting: decisions, action items with owners, small talk.
MEETING: list[tuple[int, str]] = [
    (0, "Good morning everyone. Let's start the weekly planning meeting."),
    (1, "Morning. I have the numbers from last week ready to share."),
    (0, "Great. The first item is the release schedule for version two."),
    (1, "The build is stable and all the integration tests passed yesterday."),
    (2, "The documentation still needs a review before we publish it."),
    (0, "We decided to ship version two on Friday."),
    (2, "I will review the documentation by Thursday afternoon."),
    (1, "I will update the deployment scripts and test them tomorrow."),
    (0, "Next item is the customer feedback from the pilot program."),
    (2, "Most customers liked the live captions, but some found the delay too long."),
    (1, "We could show interim text while the final transcript is being prepared."),
    (0, "That sounds useful. Let's go with interim captions for the next sprint."),
    (2, "Dana will write a short design note about the caption latency."),
    (1, "The support team also asked for a way to rename speakers in the transcript."),
    (0, "We agreed to add speaker renaming to the coordinator interface."),
    (2, "I will talk to the support team about the exact wording on the page."),
    (1, "One more thing, the storage costs went up by ten percent this month."),
    (0, "We need to check the archive lifecycle rules before the end of the month."),
    (1, "I can take that and report back next week."),
    (2, "The new office network will be installed on Monday morning."),
    (0, "Please remember to book the meeting room for the quarterly review."),
    (1, "The quarterly review will cover revenue, hiring and the product roadmap."),
    (2, "Marketing wants a short video of the product for the conference in spring."),
    (0, "Let's ask them for a draft script first and decide after that."),
    (1, "The mobile team fixed the crash on older phones last night."),
    (2, "Good news. The crash reports dropped to almost zero this morning."),
    (0, "Thanks everyone. That covers the agenda for today. See you next week."),
]


@dataclass(frozen=True)
class Turn:
    """Where one utterance sits in the assembled recording."""

    speaker: str
    start: float
    end: float
    text: str


def require_flite() -> str:
    """Path of flite, or fail loudly (it is installed by scripts/setup.d/10-ingest.sh)."""
    exe = shutil.which("flite")
    if exe is None:
        raise RuntimeError("flite is not installed; run scripts/setup")
    return exe


def say(text: str, voice: str, workdir: Path) -> np.ndarray:
    """One utterance as int16 16 kHz mono."""
    out = workdir / f"utt-{hashlib.md5((voice + text).encode()).hexdigest()[:16]}.wav"
    if not out.exists():
        subprocess.run([require_flite(), "-voice", voice, "-t", text, "-o", str(out)], check=True)
    return read_pcm(str(out))


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16000) -> Path:
    """Write int16 mono PCM as WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def conversation(
    script: list[tuple[int, str]],
    workdir: Path,
    *,
    voices: tuple[str, ...] = VOICES,
    pause: tuple[float, float] = (0.5, 1.1),
    repeat: int = 1,
    seed: int = 7,
) -> tuple[np.ndarray, list[Turn]]:
    """Assemble utterances with pauses; returns audio and the reference turns."""
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    parts: list[np.ndarray] = [np.zeros(8000, np.int16)]
    t = 0.5
    turns: list[Turn] = []
    for _ in range(repeat):
        for who, text in script:
            pcm = say(text, voices[who % len(voices)], workdir)
            turns.append(Turn(f"spk{who}", t, t + len(pcm) / 16000, text))
            gap = float(rng.uniform(*pause))
            parts += [pcm, np.zeros(int(gap * 16000), np.int16)]
            t += len(pcm) / 16000 + int(gap * 16000) / 16000
    return np.concatenate(parts), turns


def meeting_wav(workdir: Path, repeat: int = 1) -> tuple[Path, list[Turn]]:
    """The planning meeting as a WAV file (about 100 s per repeat)."""
    audio, turns = conversation(MEETING, workdir, repeat=repeat)
    return write_wav(workdir / f"meeting-x{repeat}.wav", audio), turns

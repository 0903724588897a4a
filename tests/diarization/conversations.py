"""Multi-speaker test recordings with known reference turns, made with Debian's flite.

flite's slt, awb, kal16 and rms voices are distinct speakers to embedding
models (espeak voices are not). Each utterance is trimmed to its first and last
audible sample before placing it, so a reference turn is exactly where speech
is. Audio is generated on the spot and cached outside git.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

from producer.decode import read_pcm

SR = 16_000
#: Most distinct first: segmentation-3.0 often keeps awb and rms (two male voices) as one
#: local speaker when they alternate quickly, so rms only joins in 4-speaker recordings.
VOICES = ("slt", "awb", "kal16", "rms")

SENTENCES = (
    "Let's go through the agenda for today's meeting.",
    "I looked at the numbers from last quarter and they are better than expected.",
    "The release is planned for the end of next week.",
    "Yes, that works for me.",
    "Could you send me the report after the call?",
    "We still need to decide who owns the migration.",
    "I think the second option is cheaper in the long run.",
    "Right, but it takes more time to set up.",
    "The customer asked for a demo on Thursday afternoon.",
    "I can prepare the slides tonight.",
    "Has anyone talked to the design team about the new layout?",
    "Not yet, I will call them tomorrow morning.",
    "The test servers were down for two hours yesterday.",
    "That explains the failed builds.",
    "Let's add monitoring for the disk space on those machines.",
    "Good idea. I will open a ticket for it.",
    "What about the budget for the conference in May?",
    "Finance approved it last Monday.",
    "Great, then we can book the hotel this week.",
    "I would like to hire one more engineer for the data team.",
    "We should write the job description first.",
    "Okay.",
    "The onboarding documents are out of date, by the way.",
    "I noticed that too when the new intern started.",
    "Let's review them together on Friday.",
    "Sounds good to me.",
    "Is there anything else we need to cover today?",
    "One quick thing about the office move next month.",
    "The movers will come on Saturday, so please pack your desks on Friday.",
    "Thanks everyone, see you next week.",
)


@dataclass(frozen=True)
class Recording:
    """A generated conversation: audio file, samples and the reference turns."""

    path: Path
    audio: np.ndarray  # float32, 16 kHz mono
    turns: tuple[tuple[float, float, str], ...]  # (start, end, speaker), seconds

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / SR

    def reference(self) -> Annotation:
        """Reference turns as a pyannote Annotation."""
        return turns_to_annotation(self.turns, uri=self.path.stem)


def turns_to_annotation(turns: Sequence[tuple[float, float, str]], uri: str = "rec") -> Annotation:
    """(start, end, speaker) triples -> Annotation."""
    ann = Annotation(uri=uri)
    for i, (start, end, spk) in enumerate(turns):
        ann[Segment(start, end), i] = spk
    return ann


def _flite(text: str, voice: str, cache: Path) -> np.ndarray:
    exe = shutil.which("flite")
    if exe is None:
        raise RuntimeError("flite is not installed; run scripts/setup (scripts/setup.d/10-ingest.sh)")
    out = cache / f"utt-{voice}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.wav"
    if not out.exists():
        tmp = out.with_suffix(".part.wav")
        subprocess.run([exe, "-voice", voice, "-t", text, "-o", str(tmp)], check=True)
        tmp.rename(out)
    pcm = read_pcm(str(out))  # PyAV resamples kal's 8 kHz to 16 kHz mono
    return trim(pcm.astype(np.float32) / 32768.0)


def trim(audio: np.ndarray, level: float = 0.02) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``level`` x peak (10 ms frames)."""
    frames = len(audio) // 160
    if frames == 0:
        return audio
    peak = np.abs(audio[: frames * 160]).reshape(frames, 160).max(axis=1)
    loud = np.flatnonzero(peak > level * max(float(peak.max()), 1e-9))
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] * 160 : (loud[-1] + 1) * 160]


def make_conversation(
    num_speakers: int,
    minutes: float,
    cache: Path,
    *,
    seed: int = 0,
    late_joiner: bool = False,
) -> Recording:
    """A conversation of ``num_speakers`` flite voices lasting about ``minutes``.

    Speakers alternate at random (never the same speaker twice in a row) with
    0.3-1.0 s pauses. With ``late_joiner`` the last speaker first talks after
    the first minute, so a new session speaker must appear mid-meeting.
    """
    if not 2 <= num_speakers <= len(VOICES):
        raise ValueError(f"num_speakers must be 2..{len(VOICES)}")
    cache.mkdir(parents=True, exist_ok=True)
    name = f"conv-{num_speakers}spk-{minutes:g}min-s{seed}{'-late' if late_joiner else ''}"
    wav_path = cache / f"{name}.wav"
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = [np.zeros(SR // 2, np.float32)]
    t = 0.5
    turns: list[tuple[float, float, str]] = []
    prev = -1
    while t < minutes * 60:
        allowed = [
            s for s in range(num_speakers) if s != prev and not (late_joiner and s == num_speakers - 1 and t < 60)
        ]
        who = int(rng.choice(allowed))
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        clip = _flite(text, VOICES[who], cache)
        turns.append((round(t, 4), round(t + len(clip) / SR, 4), f"spk{who}"))
        gap = int(rng.uniform(0.3, 1.0) * SR)
        parts += [clip, np.zeros(gap, np.float32)]
        t += (len(clip) + gap) / SR
        prev = who
    audio = np.concatenate(parts).astype(np.float32)
    if not wav_path.exists():
        with wave.open(str(wav_path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SR)
            w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return Recording(wav_path, audio, tuple(turns))


def silence_cuts(
    audio: np.ndarray,
    *,
    max_s: float = 30.0,
    min_s: float = 15.0,
    min_silence_s: float = 0.3,
    level: float = 0.01,
) -> list[tuple[int, int]]:
    """Window bounds (samples): each cut at the last silence before ``max_s``.

    Energy-based stand-in for the processor's VAD windowing: a run of 10 ms
    frames under ``level`` x peak lasting ``min_silence_s`` is a silence; a
    window is cut in the middle of the last such run that ends between
    ``min_s`` and ``max_s``, or hard at ``max_s`` when there is none.
    """
    hop = 160
    frames = len(audio) // hop
    peak = np.abs(audio[: frames * hop]).reshape(frames, hop).max(axis=1)
    quiet = peak < level * max(float(peak.max()), 1e-9)
    need = int(min_silence_s * 100)
    mids: list[int] = []
    run = 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run == need:
            start = i - need + 1
        if run >= need and (i + 1 == frames or not quiet[i + 1]):
            mids.append((start + i + 1) // 2 * hop)
    bounds: list[tuple[int, int]] = []
    begin = 0
    while len(audio) - begin > max_s * SR:
        options = [m for m in mids if begin + min_s * SR <= m <= begin + max_s * SR]
        cut = options[-1] if options else begin + int(max_s * SR)
        bounds.append((begin, cut))
        begin = cut
    bounds.append((begin, len(audio)))
    return bounds

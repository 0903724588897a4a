"""DER of the offline default: whole recording vs. ~30 s windows stitched by the registry.

The processor never sees a whole meeting at once: it diarizes each window
(cut at a silence before 30 s) and maps window speakers to session speakers
with embeddings. These tests hold that stitching to within 2 DER points of
diarizing the whole recording in one pass, on 2-, 3- and 4-speaker flite
conversations of about 3 minutes, and check pyannote's real sample.
"""

from __future__ import annotations

import logging
import wave
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from pyannote.metrics.diarization import DiarizationErrorRate

from contracts.settings import Settings
from processor.diarization import Diarizer, SpeakerTurn
from processor.rttm import read_rttm
from processor.speakers import build_mapper, diarize_in_windows
from tests.diarization.conversations import Recording, silence_cuts, turns_to_annotation

log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

#: Ceilings a little above what the offline default measured (docs/diarization.md).
MAX_WHOLE_DER = {2: 0.06, 3: 0.35, 4: 0.35}


def _der(reference: Recording, turns: list[SpeakerTurn] | tuple[SpeakerTurn, ...]) -> float:
    hyp = turns_to_annotation([(t.start, t.end, t.speaker) for t in turns])
    return float(DiarizationErrorRate(collar=0.0)(reference.reference(), hyp))


def _whole_and_stitched(diarizer: Diarizer, rec: Recording) -> tuple[float, float, int]:
    whole = diarizer.diarize(rec.audio)
    mapper = build_mapper(Settings.from_env({}), None)
    bounds = silence_cuts(rec.audio, max_s=30.0, min_s=15.0)
    assert len(bounds) >= 6, "a 3-minute recording should make several windows"
    stitched = diarize_in_windows(diarizer, mapper, rec.audio, bounds)
    speakers = len({t.speaker for t in stitched})
    return _der(rec, whole.turns), _der(rec, stitched), speakers


@pytest.mark.parametrize(
    "fixture, speakers",
    [
        ("two_speakers", 2),
        ("three_speakers", 3),
        ("four_speakers", 4),
    ],
)
def test_stitched_windows_within_two_points_of_whole_file(
    request: pytest.FixtureRequest, offline_diarizer: Diarizer, fixture: str, speakers: int
) -> None:
    rec: Recording = request.getfixturevalue(fixture)
    assert len({t[2] for t in rec.turns}) == speakers
    whole, stitched, found = _whole_and_stitched(offline_diarizer, rec)
    log.info("DER", extra={"recording": rec.path.stem, "whole": whole, "stitched": stitched})
    print(f"\n{rec.path.stem}: whole DER {whole:.2%}, stitched DER {stitched:.2%}, {found} session speakers")
    assert stitched <= whole + 0.02
    # segmentation-3.0 often keeps two synthetic male voices as one local speaker in
    # quick exchanges (docs/diarization.md), which bounds DER on these recordings.
    assert whole < MAX_WHOLE_DER[speakers]
    assert abs(found - speakers) <= (0 if speakers == 2 else 1)


def _sample() -> tuple[np.ndarray, Path]:
    spec = find_spec("pyannote.audio")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample"
    with wave.open(str(folder / "sample.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0), folder / "sample.rttm"


def test_real_sample_two_speakers(offline_diarizer: Diarizer) -> None:
    audio, rttm = _sample()
    reference = turns_to_annotation([(t.start, t.end, t.speaker) for t in read_rttm(rttm)])
    result = offline_diarizer.diarize(audio)
    hyp = turns_to_annotation([(t.start, t.end, t.speaker) for t in result.turns])
    der = float(DiarizationErrorRate(collar=0.0)(reference, hyp))
    print(f"\nsample.wav exclusive DER {der:.2%}, {len(result.embeddings)} speakers")
    assert len(result.embeddings) == 2
    # Exclusive turns cannot cover the reference's overlapped speech, hence not ~5 %.
    assert der < 0.20

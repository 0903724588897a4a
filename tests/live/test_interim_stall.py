"""Interim captions keep flowing while the previous window's final diarization runs (issue 13).

Before: the record thread ran ASR *and* diarization of a cut window before it
took the next record, so the next window was neither buffered nor offered to
the interim worker for the whole final pass (4.4-6.5 s measured), and the words
spoken in a window's first seconds waited that long (caption p95 7.3-7.8 s).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from contracts.segments import SpeakerTurn
from processor.diarization import Diarization, IdentityMapper
from processor.engine import EngineParts, ShardProcessor
from processor.gate import FinalGate, GatedTranscriber
from processor.interim import InterimWorker
from processor.windowing import WindowPolicy
from stores.archive import NoArchive
from stores.sqlite import SqliteTranscriptStore
from streams.base import StreamRecord
from testkit.checkpoints import ListCheckpointer
from testkit.net import wait_for
from tests.live.conftest import ScriptedTranscriber, asr_words


class HeldDiarizer:
    """One speaker, but each call waits until the test releases it (a slow final diarization)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def diarize(self, audio: np.ndarray, speech: object = None) -> Diarization:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30), "test never released the diarizer"
        return Diarization((SpeakerTurn(0.0, len(audio) / 16000, "S1"),))


def test_next_window_gets_interim_captions_while_the_previous_one_is_diarized(
    tmp_path: Path, records: list[StreamRecord], pool: ThreadPoolExecutor
) -> None:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    gate = FinalGate()
    finals = ScriptedTranscriber([[asr_words("final words of the window")]])
    interim = InterimWorker(
        ScriptedTranscriber([[asr_words("interim words")]]),
        store,
        interval=0.05,
        gate=gate,
        max_duty=1.0,
        min_new_seconds=0.0,
    )
    diarizer = HeldDiarizer()
    parts = EngineParts(
        transcriber=GatedTranscriber(finals, gate),
        diarizer=diarizer,
        mapper_factory=lambda state: IdentityMapper(state),
        store=store,
        archive=NoArchive(),
        policy=WindowPolicy(max_seconds=10, min_seconds=5),
        interim=interim,
        diarization_pool=pool,
    )
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    checkpoints = ListCheckpointer()
    fed = threading.Event()
    first = records[0].seq

    def feed() -> None:
        for rec in records[:-1]:  # all audio, not the end yet
            proc.process_records([rec], checkpoints)
            # Live, a cut window's final ASR runs on its own thread (processor/final_asr.py) and
            # ends long before the next 1 s record; this feed is faster than real time.
            wait_for(lambda: not gate.busy, 10, "the final ASR")
            if diarizer.entered.is_set():
                interim.wait_idle(5)  # give the worker each snapshot, as real time would
        fed.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert diarizer.entered.wait(20), "window 0 was never cut"
        # Window 0 is being diarized (held): the record thread goes on, and window 1
        # gets interim captions meanwhile.
        wait_for(
            lambda: any(s.window_index == 1 for s in store.segments("s", include_interim=True)),
            timeout=10,
        )
        assert not diarizer.release.is_set()
        assert all(not s.is_final for s in store.segments("s", include_interim=True)), "window 0 committed early"
        # Window 0 is not committed: the checkpoint never passed its first record.
        assert all(v < first for v in checkpoints.values), (checkpoints.values, first)
    finally:
        diarizer.release.set()
    # (Had window 1 filled up meanwhile, its cut would have waited for window 0: one cut window per session.)
    assert fed.wait(20)
    proc.process_records(records[-1:], checkpoints)
    rows = store.segments("s", include_interim=True)
    assert rows and all(s.is_final for s in rows), "finals replace every interim row"
    windows = store.windows("s")
    assert [w.window_index for w in windows] == list(range(len(windows))) and len(windows) >= 3
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    assert windows[-1].end_sample == 25 * 16000
    assert diarizer.calls == len(windows)
    assert checkpoints.values[-1] == records[-1].seq
    interim.stop()

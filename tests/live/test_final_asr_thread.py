"""Records keep flowing while a cut window's final ASR runs, and the next window's
first interim pass decodes them (issue 22).

Before: the record thread ran a cut window's final ASR (beam 5, 1-4.6 s measured on
real speech over RTMP) before it read the next record, and the interim worker dropped
the snapshot it was offered meanwhile. The first interim pass of the next window then
decoded a snapshot that ended at the cut, and the words spoken during the final ASR
waited for the pass after it (bench.captions trace: pipe 5.2 s for the words of a
window's first seconds).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from contracts.frames import FrameRecord
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

#: Records fed after the one whose final ASR is held.
FED_WHILE_HELD = 3


class OneSpeaker:
    def diarize(self, audio: np.ndarray, speech: object = None) -> Diarization:
        return Diarization((SpeakerTurn(0.0, len(audio) / 16000, "S1"),))


def record_end(rec: StreamRecord) -> int:
    frame = FrameRecord.decode(rec.data)
    return frame.end_offset


def test_records_flow_and_feed_interim_captions_while_a_final_asr_runs(
    tmp_path: Path, records: list[StreamRecord], pool: ThreadPoolExecutor
) -> None:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    gate = FinalGate()
    finals = ScriptedTranscriber([[asr_words("final words of the window")]])
    finals.hold.clear()  # every final ASR waits until the test releases it
    interim = InterimWorker(
        ScriptedTranscriber([[asr_words("interim words")]]),
        store,
        interval=0.05,
        gate=gate,
        max_duty=1.0,
        min_new_seconds=0.0,
    )
    parts = EngineParts(
        transcriber=GatedTranscriber(finals, gate),
        diarizer=OneSpeaker(),
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
    fed: list[StreamRecord] = []
    paused = threading.Event()
    go_on = threading.Event()

    def feed() -> None:
        cut_at: int | None = None
        for i, rec in enumerate(records[:-1]):  # all audio, not the end yet
            if cut_at is None and finals.entered.is_set():
                cut_at = i
            if cut_at is not None and i == cut_at + FED_WHILE_HELD:
                paused.set()
                go_on.wait(30)
            proc.process_records([rec], checkpoints)
            fed.append(rec)
            # A cut makes the gate busy at once; let its final ASR start before the next record.
            wait_for(lambda: finals.entered.is_set() or not gate.busy, 10, "the final ASR to start")

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert finals.entered.wait(20), "window 0 was never cut"
        # Window 0's final ASR is held: the record thread reads the next records meanwhile.
        assert paused.wait(10), "no record was read while the final ASR ran"
        assert not store.segments("s"), "window 0 committed before its ASR finished"
        assert all(v < records[0].seq for v in checkpoints.values), "checkpoint passed uncommitted audio"
        assert not [t for t in interim.timings("s") if t.window_index == 1], "an interim pass ran during a final"
        newest = record_end(fed[-1])
        finals.hold.set()
        # No record arrives now: the snapshot offered while the final ran is not dropped,
        # the first pass of window 1 runs on it as soon as the final ends.
        wait_for(lambda: any(t.window_index == 1 for t in interim.timings("s")), 10, "window 1's first pass")
        first = next(t for t in interim.timings("s") if t.window_index == 1)
        assert first.start_sample + first.samples == newest, "the first pass missed the records read meanwhile"
    finally:
        finals.hold.set()
        go_on.set()
    feeder.join(30)
    proc.process_records(records[-1:], checkpoints)
    rows = store.segments("s", include_interim=True)
    assert rows and all(s.is_final for s in rows), "finals replace every interim row"
    windows = store.windows("s")
    assert [w.window_index for w in windows] == list(range(len(windows))) and len(windows) >= 3
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    assert windows[-1].end_sample == 25 * 16000
    assert checkpoints.values[-1] == records[-1].seq
    interim.stop()

"""Records keep flowing while a cut window's final ASR runs; the next window's first
interim pass runs before that final ASR, and its next pass decodes the records read
meanwhile (issue 22).

Before round 27 the record thread ran a cut window's final ASR (beam 5, 1-4.6 s
measured on real speech over RTMP) before it read the next record (bench.captions
trace: pipe 5.2 s for the words of a window's first seconds). In round 27 the records
flowed, but the final ASR still ran before the next window's first pass, so the words
spoken between the window's pause and its cut waited for it ("behind" p95 5.9-6.3 s on
a quiet box). Now that one pass goes first (processor/first_pass.py).
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
from processor.interim_timing import PassTiming
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


def window_passes(interim: InterimWorker, window: int) -> list[PassTiming]:
    return [t for t in interim.timings("s") if t.window_index == window]


def test_records_flow_and_the_next_window_is_captioned_first_while_a_final_asr_runs(
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
    window1_at_final: list[list[PassTiming]] = []  # window 1's passes when each final ASR began
    finals.on_call = lambda: window1_at_final.append(window_passes(interim, 1))
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    checkpoints = ListCheckpointer()
    fed: list[StreamRecord] = []
    cut_end: list[int] = []  # the end of the record whose window 0 was cut
    paused = threading.Event()
    go_on = threading.Event()

    def feed() -> None:
        cut_at: int | None = None
        for i, rec in enumerate(records[:-1]):  # all audio, not the end yet
            if cut_at is None and finals.entered.is_set():
                cut_at = i
                cut_end.append(record_end(fed[-1]))
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
        # Window 1's first pass ran before window 0's final ASR began, on the audio up to the cut ...
        first = window1_at_final[0]
        assert len(first) == 1, "the final ASR began before the next window's first interim pass"
        assert first[0].start_sample + first[0].samples == cut_end[0]
        # ... and no other pass of window 1 runs while the final ASR does.
        assert window_passes(interim, 1) == first, "an interim pass ran during a final"
        newest = record_end(fed[-1])
        finals.hold.set()
        # No record arrives now: the snapshot offered while the final ran is not dropped,
        # the next pass of window 1 runs on it as soon as the final ends.
        wait_for(lambda: len(window_passes(interim, 1)) > 1, 10, "window 1's second pass")
        second = window_passes(interim, 1)[1]
        assert second.start_sample + second.samples == newest, "the pass missed the records read meanwhile"
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

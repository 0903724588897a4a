"""Interim captions through the real engine and model: replaced in place, never a word twice,
finals unchanged by interim work."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.frames import FrameKind, FrameRecord
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.gate import FinalGate, GatedTranscriber
from processor.interim import InterimWorker
from processor.windowing import WindowPolicy
from producer.decode import read_pcm
from stores.archive import LocalArchive
from stores.sqlite import SqliteTranscriptStore
from streams.base import StreamRecord
from testkit.speech import Turn

SID = "live-engine"
SECONDS = 34


class Checkpoints:
    """Records checkpoints (the engine's safety rules are tested elsewhere)."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def checkpoint(self, sequence_number: str | None = None) -> None:
        self.seen.append(sequence_number)


def records(pcm: np.ndarray) -> list[StreamRecord]:
    out = []
    for seq, start in enumerate(range(0, pcm.size, 16000)):
        frame = FrameRecord(SID, seq, start, payload=pcm[start : start + 16000].astype("<i2").tobytes())
        out.append(StreamRecord(str(seq + 1), SID, frame.encode()))
    end = FrameRecord(SID, len(out), pcm.size, kind=FrameKind.END)
    out.append(StreamRecord(str(len(out) + 1), SID, end.encode()))
    return out


def run(
    tmp: Path, transcriber: Any, pcm: np.ndarray, interim: bool, pooled: bool = False
) -> tuple[SqliteTranscriptStore, list[Any]]:
    """Feed the engine record by record; after each, let the interim worker catch up and
    apply the store's change feed to a viewer, checking what the viewer shows.

    ``pooled``: final diarization on its own thread (as ``build.py`` wires it with interim on)."""
    store = SqliteTranscriptStore(tmp / f"t-{interim}-{pooled}.db")
    pool = ThreadPoolExecutor(max_workers=1) if pooled else None
    gate = FinalGate()
    worker = InterimWorker(transcriber, store, interval=0.01, gate=gate, max_duty=1.0, min_new_seconds=0.9)
    parts = EngineParts(
        transcriber=GatedTranscriber(transcriber, gate),
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=store,
        archive=LocalArchive(tmp / f"archive-{interim}"),
        policy=WindowPolicy(12.0, 6.0, 300),
        interim=worker if interim else None,
        diarization_pool=pool,
    )
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    view: dict[int, Any] = {}
    log: list[Any] = []
    revision = 0
    for rec in records(pcm):
        proc.process_records([rec], Checkpoints())
        assert worker.wait_idle(60)
        for change in store.changes_since(SID, revision):
            revision = change.revision
            old = view.get(change.window_index)
            assert not (old is not None and old.is_final and not change.is_final), "a final reverted to interim"
            view[change.window_index] = change
            log.append(change)
            check_no_word_twice(store, view)
    worker.stop()
    if pool is not None:
        pool.shutdown()
    return store, log


def check_no_word_twice(store: SqliteTranscriptStore, view: dict[int, Any]) -> None:
    """Interim text of an open window lies after every final window's audio."""
    finals_end = max((w.end for w in store.windows(SID)), default=0.0)
    for change in view.values():
        if change.is_final:
            continue
        for seg in change.segments:
            for w in seg.words:
                assert w.start >= finals_end - 0.05, (w, finals_end)


@pytest.mark.slow
@pytest.mark.parametrize("pooled", [False, True], ids=["inline-diarization", "pooled-diarization"])
def test_interim_then_final_in_place_without_duplicates(
    tmp_path: Path, transcriber: Any, meeting: tuple[Path, list[Turn]], pooled: bool
) -> None:
    wav, _ = meeting
    pcm = read_pcm(str(wav))[: SECONDS * 16000]
    store, log = run(tmp_path, transcriber, pcm, interim=True, pooled=pooled)
    finals = {c.window_index for c in log if c.is_final}
    assert len(finals) >= 3
    for w in sorted(finals):
        kinds = [c.is_final for c in log if c.window_index == w]
        assert kinds[0] is False, f"window {w} showed interim text before its final"
        assert kinds[-1] is True
    assert any(s.stable for c in log if not c.is_final for s in c.segments), "agreement marks stable text"
    everything = store.segments(SID, include_interim=True)
    assert everything and all(s.is_final for s in everything), "no interim row outlives its window"
    # Stable interim words mostly survive into the final text of their window.
    final_words = {w: " ".join(s.text for s in store.segments(SID) if s.window_index == w).lower() for w in finals}
    stable = [
        (c.window_index, word.text.strip(" .,?!").lower())
        for c in log
        if not c.is_final
        for s in c.segments
        if s.stable
        for word in s.words
    ]
    kept = sum(1 for w, t in stable if t and t in final_words[w])
    assert stable and kept / len(stable) > 0.8, (kept, len(stable))
    # Same audio, interim off: the final transcript is identical (interim work never changes finals).
    plain, _ = run(tmp_path, transcriber, pcm, interim=False)
    assert [(s.window_index, s.text) for s in plain.segments(SID)] == [
        (s.window_index, s.text) for s in store.segments(SID)
    ]

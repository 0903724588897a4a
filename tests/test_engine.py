"""The processor engine with the real bundled Whisper model: windows, joins, checkpoints."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from contracts.frames import FrameRecord
from contracts.segments import TranscriptSegment, WindowRecord
from flowbot.wer import wer
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy, choose_cut, to_float
from producer.decode import read_pcm
from producer.framer import SessionFramer
from stores.archive import LocalArchive
from stores.base import SessionProgress
from stores.sqlite import SqliteTranscriptStore
from streams.base import StreamRecord
from streams.embedded import EmbeddedStream
from testkit.checkpoints import ListCheckpointer
from testkit.speech import MEETING, Turn


def _parts(tmp: Path, transcriber: object, policy: WindowPolicy) -> EngineParts:
    return EngineParts(
        transcriber=transcriber,  # type: ignore[arg-type]
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=SqliteTranscriptStore(tmp / "t.db"),
        archive=LocalArchive(tmp / "archive"),
        policy=policy,
    )


def _text(store: SqliteTranscriptStore, session: str) -> str:
    return " ".join(s.text for s in store.segments(session))


def _frames(stream: EmbeddedStream, session: str, pcm: np.ndarray) -> list[StreamRecord]:
    """Put one session's audio and its end on the stream; return the records."""
    framer = SessionFramer(stream, session)
    framer.push(pcm)
    framer.end()
    return stream.read("shard-0", 0, 100_000)


def _run(parts: EngineParts, records: Sequence[StreamRecord]) -> ShardProcessor:
    """Process records from the start of a shard in one go (the uninterrupted reference)."""
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(records, ListCheckpointer())
    return proc


def test_cut_lands_in_a_pause(meeting: tuple[Path, list[Turn]]) -> None:
    path, turns = meeting
    audio = to_float(read_pcm(str(path)))
    policy = WindowPolicy(max_seconds=30, min_seconds=15)
    cut = choose_cut(audio, policy)
    assert cut.reason == "silence"
    t = cut.at / 16000
    assert 15 <= t <= 30
    assert not any(turn.start + 0.05 < t < turn.end - 0.05 for turn in turns), f"cut at {t:.2f}s is inside speech"


@pytest.mark.slow
def test_windowed_wer_within_one_point_of_whole_file(
    tmp_path: Path, long_meeting: tuple[Path, list[Turn]], transcriber: object
) -> None:
    path, turns = long_meeting
    reference = " ".join(t.text for t in turns)
    pcm = read_pcm(str(path))
    whole = " ".join(s.text for s in transcriber.transcribe(to_float(pcm)))  # type: ignore[attr-defined]

    records = _frames(EmbeddedStream(tmp_path / "s.db"), "long", pcm)
    parts = _parts(tmp_path, transcriber, WindowPolicy(30, 15))
    proc = _run(parts, records)
    windowed = _text(parts.store, "long")  # type: ignore[arg-type]

    w_whole, w_windowed = wer(reference, whole), wer(reference, windowed)
    windows = parts.store.windows("long")
    assert len(windows) >= 10, "a 5-minute meeting must span many 30 s windows"
    assert all(w.end_sample - w.start_sample <= 30 * 16000 for w in windows)
    assert proc.counters["cut_forced"] == 0
    print(f"WER whole-file {w_whole:.3%}, windowed {w_windowed:.3%}, windows {len(windows)}")
    assert w_windowed <= w_whole + 0.01


def _interleave(stream: EmbeddedStream, sessions: dict[str, np.ndarray], garbage_every: int = 0) -> None:
    framers = {s: SessionFramer(stream, s) for s in sessions}
    offsets = dict.fromkeys(sessions, 0)
    n = 0
    while any(offsets[s] < len(a) for s, a in sessions.items()):
        for s, audio in sessions.items():
            if offsets[s] < len(audio):
                framers[s].push(audio[offsets[s] : offsets[s] + 16000])
                offsets[s] += 16000
                n += 1
                if garbage_every and n % garbage_every == 0:
                    stream.put_raw([(s, b"not a frame record")])
    for f in framers.values():
        f.end()


def test_interleaved_sessions_checkpoint_never_passes_an_open_window(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], speech_dir: Path, transcriber: object
) -> None:
    pcm = read_pcm(str(meeting[0]))
    sessions = {"alpha": pcm[: 40 * 16000], "beta": pcm[30 * 16000 : 75 * 16000]}
    stream = EmbeddedStream(tmp_path / "s.db")
    _interleave(stream, sessions, garbage_every=17)
    policy = WindowPolicy(max_seconds=12, min_seconds=6)
    parts = _parts(tmp_path, transcriber, policy)
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    records = stream.read("shard-0", 0, 100_000)
    store: SqliteTranscriptStore = parts.store  # type: ignore[assignment]
    for i in range(0, len(records), 5):
        batch = records[i : i + 5]
        proc.process_records(batch, ckpt)
        if ckpt.values:
            c = ckpt.values[-1]
            # Every audio record at or before the checkpoint is committed to the store.
            for rec in records:
                if rec.seq > c:
                    break
                try:
                    frame = FrameRecord.decode(rec.data)
                except ValueError:
                    continue
                progress = store.load_progress(frame.session_id)
                assert progress is not None and progress.committed_sample >= frame.end_offset, (
                    f"checkpoint {c} passed uncommitted record {rec.seq} of {frame.session_id}"
                )
    assert (
        proc.counters["malformed_records"] == len(records) - sum(1 for r in records if r.data.startswith(b"FBFR")) > 0
    )
    assert ckpt.values[-1] == records[-1].seq
    for name in sessions:
        progress = store.load_progress(name)
        assert progress is not None and progress.stream_done
    # Each session's transcript is the same as processing it alone.
    for name, audio in sessions.items():
        solo_parts = _parts(tmp_path / name, transcriber, policy)
        _run(solo_parts, _frames(EmbeddedStream(tmp_path / f"{name}.db"), name, audio))
        assert [s.text for s in store.segments(name)] == [s.text for s in solo_parts.store.segments(name)]
    assert wer(" ".join(t for _, t in MEETING[:9]), _text(store, "alpha")) < 0.35
    assert "speaker renaming" in _text(store, "beta").lower()


def test_replay_after_a_lost_lease_rewrites_identical_rows(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], transcriber: object
) -> None:
    pcm = read_pcm(str(meeting[0]))[: 30 * 16000]
    records = _frames(EmbeddedStream(tmp_path / "s.db"), "replay", pcm)
    parts = _parts(tmp_path, transcriber, WindowPolicy(10, 5))
    first = ShardProcessor(parts)
    first.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    first.process_records(records[:17], ckpt)
    committed = parts.store.segments("replay")
    assert committed, "some windows must be committed after 17 s"
    first.lease_lost()
    # A new worker starts after the last checkpoint, as KCL would.
    second = ShardProcessor(parts)
    start = ckpt.values[-1] if ckpt.values else 0
    second.initialize("shard-0", str(start))
    second.process_records([r for r in records if r.seq > start], ListCheckpointer())
    again = parts.store.segments("replay")
    assert again[: len(committed)] == committed
    keys = [s.key for s in again]
    assert len(keys) == len(set(keys))
    reference = _run(_parts(tmp_path / "ref", transcriber, WindowPolicy(10, 5)), records)
    assert [(s.window_index, s.text) for s in again] == [
        (s.window_index, s.text) for s in reference.parts.store.segments("replay")
    ]


def test_silence_and_noise_produce_no_text(tmp_path: Path, transcriber: object) -> None:
    """Whisper invents words over silence ("Thank you."); nothing may reach the store."""
    from processor.engine import transcribe_window

    rng = np.random.default_rng(1)
    parts = _parts(tmp_path, transcriber, WindowPolicy(30, 15))
    for audio in (np.zeros(20 * 16000, np.int16), (rng.normal(0, 60, 20 * 16000)).astype(np.int16)):
        result = transcribe_window(parts, IdentityMapper(), "quiet", 0, 0, audio)
        assert result.segments == [] and result.samples == len(audio)


class FlakyStore(SqliteTranscriptStore):
    """A real SQLite store whose second window commit fails once, like a dropped connection."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls = 0

    def commit_window(
        self, window: WindowRecord, segments: Sequence[TranscriptSegment], progress: SessionProgress
    ) -> None:
        self.calls += 1
        if self.calls == 2:
            raise OSError("connection reset while committing")
        super().commit_window(window, segments, progress)


def test_embedded_consumer_recovers_from_a_transient_store_failure(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], transcriber: object
) -> None:
    import threading

    from streams.embedded import EmbeddedConsumer

    pcm = read_pcm(str(meeting[0]))[: 25 * 16000]
    stream = EmbeddedStream(tmp_path / "s.db")
    records = _frames(stream, "flaky", pcm)
    policy = WindowPolicy(10, 5)
    parts = _parts(tmp_path, transcriber, policy)
    parts.store = FlakyStore(tmp_path / "flaky.db")
    consumer = EmbeddedConsumer(stream, "app", lambda: ShardProcessor(parts), idle_sleep=0.01)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        for _ in range(600):
            p = parts.store.load_progress("flaky")
            if p and p.stream_done:
                break
            threading.Event().wait(0.1)
    finally:
        consumer.stop()
        thread.join(timeout=60)
    assert parts.store.calls > 2  # it failed once and went on
    reference = _run(_parts(tmp_path / "ref", transcriber, policy), records)
    strip = lambda segs: [(s.window_index, s.segment_index, s.text) for s in segs]  # noqa: E731
    assert strip(parts.store.segments("flaky")) == strip(reference.parts.store.segments("flaky"))
    assert all(w.status == "done" for w in parts.store.windows("flaky"))


def test_resharding_parent_then_child_loses_nothing(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], transcriber: object
) -> None:
    """A split: the parent shard ends mid-window, its child shard carries on (as KCL orders them)."""
    pcm = read_pcm(str(meeting[0]))[: 30 * 16000]
    records = _frames(EmbeddedStream(tmp_path / "s.db"), "split", pcm)
    policy = WindowPolicy(10, 5)
    parts = _parts(tmp_path, transcriber, policy)
    parent = ShardProcessor(parts)
    parent.initialize("shard-parent", None)
    ckpt = ListCheckpointer()
    parent.process_records(records[:13], ckpt)  # 13 s in: window 1 is open
    assert parts.store.load_progress("split").committed_sample < 13 * 16000  # type: ignore[union-attr]
    parent.shard_ended(ckpt)  # commits the open window, checkpoints SHARD_END
    assert parts.store.load_progress("split").committed_sample == 13 * 16000  # type: ignore[union-attr]
    child = ShardProcessor(parts)  # possibly another worker: state comes from the store only
    child.initialize("shard-child", None)
    child.process_records(records[13:], ListCheckpointer())
    windows = parts.store.windows("split")
    assert windows[0].start_sample == 0 and windows[-1].end_sample == len(pcm)
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    got = " ".join(s.text for s in parts.store.segments("split"))
    reference = _run(_parts(tmp_path / "ref", transcriber, policy), records)
    ref = " ".join(s.text for s in reference.parts.store.segments("split"))
    assert wer(ref, got) < 0.1  # one extra cut (at the shard end), no lost span


def test_forced_cuts_carry_over_and_replay_identically(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], transcriber: object
) -> None:
    """Speech with every pause squeezed out: every cut is forced, each window commits up to
    a word gap and carries the rest (with left context) into the next; a worker that takes
    over mid-meeting from the checkpoint writes exactly the rows of an uninterrupted run."""
    from testkit.corpus import squeeze

    pcm, _, _ = squeeze(read_pcm(str(meeting[0]))[: 45 * 16000], 0.1)
    records = _frames(EmbeddedStream(tmp_path / "s.db"), "dense", pcm)
    policy = WindowPolicy(10, 5)
    reference = _run(_parts(tmp_path / "ref", transcriber, policy), records)
    ref_store = reference.parts.store
    windows = ref_store.windows("dense")
    assert reference.counters["cut_forced"] >= 3 and reference.counters["carried_windows"] >= 3
    assert windows[0].start_sample == 0 and windows[-1].end_sample == len(pcm)
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    assert any(w.end_sample - w.start_sample < 10 * 16000 - 16000 for w in windows[:-1])  # tails were carried
    assert wer(" ".join(t for _, t in MEETING[:13]), _text(ref_store, "dense")) < 0.35  # type: ignore[arg-type]

    parts = _parts(tmp_path, transcriber, policy)
    first = ShardProcessor(parts)
    first.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    first.process_records(records[:26], ckpt)
    assert len(parts.store.windows("dense")) >= 2
    first.lease_lost()
    second = ShardProcessor(parts)
    start = ckpt.values[-1] if ckpt.values else 0
    second.initialize("shard-0", str(start))
    second.process_records([r for r in records if r.seq > start], ListCheckpointer())
    rows = lambda store: [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in store.segments("dense")]  # noqa: E731
    assert rows(parts.store) == rows(ref_store)
    assert [(w.start_sample, w.end_sample) for w in parts.store.windows("dense")] == [
        (w.start_sample, w.end_sample) for w in windows
    ]

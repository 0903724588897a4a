"""The interim worker's rules: agreement, replace-in-place, never over a final, drop-not-queue."""

from __future__ import annotations

import threading
import time

from contracts.segments import TranscriptSegment, WindowRecord
from processor.gate import FinalGate, GatedTranscriber
from processor.interim import InterimWorker, agreed_prefix, interim_segments
from stores.base import SessionProgress
from stores.sqlite import SqliteTranscriptStore
from testkit.net import wait_for
from tests.live.conftest import ScriptedTranscriber, asr_words, pcm


def idle(worker: InterimWorker, sid: str, passes: int) -> None:
    """Wait until ``passes`` passes ran and the last one's write landed in the store.

    ``passes`` counts a pass before its rows are written; a fixed pause for the write
    read the store too early on a loaded machine (``wait_idle`` ends with the pass).
    """
    wait_for(lambda: worker.stats(sid)["passes"] >= passes, 60, f"{passes} interim passes")
    assert worker.wait_idle(60), "the interim pass never finished"


def test_agreed_prefix_is_local_agreement_2() -> None:
    assert agreed_prefix([], ["a", "b"]) == 0
    assert agreed_prefix(["the", "build", "is"], ["the", "build", "was", "stable"]) == 2
    assert agreed_prefix(["a", "b"], ["a", "b", "c"]) == 2


def test_segments_split_at_the_stable_prefix_on_the_session_timeline() -> None:
    asr = [asr_words("the build is stable", 0.0), asr_words("and all tests passed", 2.0)]
    segs = interim_segments("s", 3, 16000 * 90, asr, 6, "S2")
    assert [(s.text, s.stable) for s in segs] == [
        ("the build is stable", True),
        ("and all", True),
        ("tests passed", False),
    ]
    assert [s.segment_index for s in segs] == [0, 1, 2]
    assert all(not s.is_final and s.window_index == 3 and s.speaker == "S2" for s in segs)
    assert segs[0].start == 90.0 and segs[2].words[0].start == 90.0 + 2.0 + 2 * 0.3


def test_stability_grows_as_passes_agree(store: SqliteTranscriptStore) -> None:
    fake = ScriptedTranscriber(
        [
            [asr_words("the bill is")],
            [asr_words("the build is stable and")],
            [asr_words("the build is stable and all tests passed")],
        ]
    )
    worker = InterimWorker(fake, store, interval=0.01, max_duty=1.0, min_new_seconds=0.1)
    seen = []
    for i, secs in enumerate((1.0, 2.0, 3.0)):
        worker.offer("s", 0, 0, pcm(secs))
        idle(worker, "s", i + 1)
        rows = store.segments("s", include_interim=True)
        seen.append([(r.text, r.stable) for r in rows])
    assert seen[0] == [("the bill is", False)]  # first pass: nothing to agree with
    assert seen[1] == [("the", True), ("build is stable and", False)]
    assert seen[2] == [("the build is stable and", True), ("all tests passed", False)]
    assert all(c[1] == 1 for c in fake.calls), "interim passes decode greedily (beam 1)"
    worker.stop()


def test_final_replaces_interim_in_place_and_late_pass_never_overwrites(store: SqliteTranscriptStore) -> None:
    fake = ScriptedTranscriber([[asr_words("hello wor")]])
    worker = InterimWorker(fake, store, interval=0.01, max_duty=1.0)
    worker.offer("s", 0, 0, pcm(2))
    idle(worker, "s", 1)
    change = store.changes_since("s", 0)[-1]
    assert not change.is_final and [s.text for s in change.segments] == ["hello wor"]
    # A pass starts on window 0 and is held while the engine commits the final.
    fake.passes = [[asr_words("hello wrong late text")]]
    fake.hold.clear()
    fake.entered.clear()
    worker.offer("s", 0, 0, pcm(4))
    assert fake.entered.wait(5)
    final = TranscriptSegment("s", 0, 0, 0.0, 1.0, "hello world", "S1")
    store.commit_window(WindowRecord("s", 0, 0, 64000), [final], SessionProgress("s", 1, 64000))
    worker.window_closed("s", 0)
    fake.hold.set()
    wait_for(lambda: worker.stats("s")["stale"] >= 1)
    assert [(s.text, s.is_final) for s in store.segments("s", include_interim=True)] == [("hello world", True)]
    # Even without the close notice (a race), the store refuses interim rows of a final window.
    racing = InterimWorker(ScriptedTranscriber([[asr_words("late")]]), store, interval=0.01, max_duty=1.0)
    racing.offer("s", 0, 0, pcm(2))
    wait_for(lambda: racing.stats("s")["rejected_final"] == 1)
    assert [s.text for s in store.segments("s", include_interim=True)] == ["hello world"]
    changes = store.changes_since("s", 0)
    assert [c.is_final for c in changes] == [True]
    worker.stop()
    racing.stop()


def test_offer_never_blocks_and_drops_instead_of_queueing(store: SqliteTranscriptStore) -> None:
    fake = ScriptedTranscriber([[asr_words("one two")]])
    fake.hold.clear()
    worker = InterimWorker(fake, store, interval=0.01, max_duty=1.0, min_new_seconds=0.0)
    worker.offer("s", 0, 0, pcm(1))
    assert fake.entered.wait(5)  # the worker is now stuck in a slow pass
    # All 50 offers return while the pass is still held: had offer waited for the pass (or
    # for queue room), this thread could not finish before the hold is released. No timing
    # bound: the shared CI machine decides how fast 50 offers are, not the worker.
    snapshots = [pcm(1 + i * 0.1) for i in range(50)]

    def offer_all() -> None:
        for audio in snapshots:
            worker.offer("s", 0, 0, audio)

    offers = threading.Thread(target=offer_all)
    offers.start()
    offers.join(30)
    assert not offers.is_alive(), "offer must not wait for a pass"
    assert not fake.hold.is_set() and worker.stats("s")["passes"] <= 1
    fake.hold.set()
    wait_for(lambda: worker.stats("s")["passes"] == 2)
    time.sleep(0.2)
    stats = worker.stats("s")
    # 51 offers, 2 passes: the first, then only the newest snapshot; 49 were dropped.
    assert stats["offered"] == 51 and stats["passes"] == 2 and stats["superseded"] == 49
    assert fake.calls[-1][0] == pcm(1 + 49 * 0.1).size, "the pass after the slow one took the newest snapshot"
    worker.stop()


def test_interim_passes_skip_while_a_final_runs(store: SqliteTranscriptStore) -> None:
    fake = ScriptedTranscriber([[asr_words("final text")]])
    gate = FinalGate()
    engine_asr = GatedTranscriber(fake, gate)
    worker = InterimWorker(fake, store, interval=0.05, gate=gate, max_duty=1.0, min_new_seconds=0.0)
    fake.hold.clear()
    import threading

    final = threading.Thread(target=engine_asr.transcribe, args=(pcm(1).astype("float32"),))
    final.start()
    assert fake.entered.wait(5) and gate.busy
    for i in range(10):
        worker.offer("s", 0, 0, pcm(1 + i))
        time.sleep(0.06)
    stats = worker.stats("s")
    assert stats["passes"] == 0 and stats["skipped_for_final"] >= 3, stats
    assert len(fake.calls) == 1, "no interim pass may run while the final does"
    fake.hold.set()
    final.join(5)
    worker.offer("s", 0, 0, pcm(12))
    wait_for(lambda: worker.stats("s")["passes"] == 1)
    worker.stop()


def test_a_new_windows_first_pass_runs_before_the_cut_windows_final(store: SqliteTranscriptStore) -> None:
    """At a cut the final ASR waits for the new window's first pass; later passes wait for the final."""
    fake = ScriptedTranscriber([[asr_words("a b")]])
    gate = FinalGate()
    worker = InterimWorker(fake, store, interval=0.05, gate=gate, max_duty=1.0, min_new_seconds=0.0)
    worker.offer("s", 0, 0, pcm(5))
    idle(worker, "s", 1)
    with gate.final():  # window 0 is cut: its final ASR holds the gate from the cut on
        worker.offer("s", 1, 5 * 16000, pcm(2))
        assert gate.first_passes.wait("s", 1), "the first pass of window 1 never ran"
        assert worker.stats("s")["passes"] == 2, "window 1's first pass ran while the gate was busy"
        worker.offer("s", 1, 5 * 16000, pcm(3))
        # A window offered with under a second of audio has no first pass to wait for.
        worker.offer("s", 2, 8 * 16000, pcm(0.5))
        assert gate.first_passes.wait("s", 2, offer_wait=0.0, pass_wait=0.0)
        wait_for(lambda: worker.stats("s")["skipped_for_final"] >= 1, 10, "a due pass held for the final")
        assert worker.stats("s")["passes"] == 2, "only the first pass of a window goes before a final"
    idle(worker, "s", 3)
    worker.stop()


def test_two_sessions_share_the_worker_fairly(store: SqliteTranscriptStore) -> None:
    fake = ScriptedTranscriber([[asr_words("a b c")]])
    worker = InterimWorker(fake, store, interval=0.05, max_duty=1.0, min_new_seconds=0.0)

    def passes() -> tuple[int, int]:
        return worker.stats("a")["passes"], worker.stats("b")["passes"]

    # Both sessions keep offering until one has had 10 passes: the share is under test, not
    # how many passes a second of wall time brings (1 s of offers gave 2 each when a write
    # took 0.3 s, as on a loaded machine).
    deadline = time.monotonic() + 120
    n = 0
    while max(passes()) < 10 and time.monotonic() < deadline:
        n += 1
        worker.offer("a", 0, 0, pcm(1 + n * 0.01))
        worker.offer("b", 0, 0, pcm(1 + n * 0.01))
        time.sleep(0.01)
    assert worker.wait_idle(60)
    a, b = passes()
    assert max(a, b) >= 10 and abs(a - b) <= 2, (a, b)
    assert {"a", "b"} <= set(worker.stats())
    worker.stop()


def test_speaker_of_interim_text_is_the_last_final_speaker(store: SqliteTranscriptStore) -> None:
    store.commit_window(
        WindowRecord("s", 0, 0, 16000),
        [TranscriptSegment("s", 0, 0, 0.0, 0.5, "hi", "S1"), TranscriptSegment("s", 0, 1, 0.5, 1.0, "yo", "S2")],
        SessionProgress("s", 1, 16000),
    )
    worker = InterimWorker(ScriptedTranscriber([[asr_words("more words")]]), store, interval=0.01, max_duty=1.0)
    worker.window_closed("s", 0)
    worker.offer("s", 1, 16000, pcm(2))
    wait_for(lambda: worker.stats("s")["written"] == 1)
    interim = [s for s in store.segments("s", include_interim=True) if not s.is_final]
    assert interim and {s.speaker for s in interim} == {"S2"}
    assert interim[0].start >= 1.0, "interim text of window 1 lies after window 0"
    worker.stop()


def test_pass_timings_say_which_snapshot_each_pass_decoded_and_when(store: SqliteTranscriptStore) -> None:
    """``timings`` (bench/captions.py's stage breakdown) has one entry per pass, of its own session only."""
    fake = ScriptedTranscriber([[asr_words("one two")]])
    worker = InterimWorker(fake, store, interval=0.01, max_duty=1.0, min_new_seconds=0.1)
    for i, secs in enumerate((1.0, 2.0)):
        worker.offer("s", 3, 16_000, pcm(secs))
        idle(worker, "s", i + 1)
    worker.offer("other", 0, 0, pcm(1.0))
    idle(worker, "other", 1)
    worker.stop()
    timings = worker.timings("s")
    assert [(t.window_index, t.start_sample, t.samples) for t in timings] == [
        (3, 16_000, pcm(1).size),
        (3, 16_000, pcm(2).size),
    ]
    assert all(t.offered_at <= t.started <= t.finished for t in timings)
    assert timings[0].finished <= timings[1].started
    assert [t.session_id for t in worker.timings("other")] == ["other"]


def test_passes_start_as_their_record_arrives_whatever_the_first_pass_took(store: SqliteTranscriptStore) -> None:
    """The cadence counts from the last pass's snapshot, so a slow first pass does not leave every later pass
    on a stale snapshot (fails on 243d9e4: counted from the pass's start, each pass took a snapshot 0.4 s old)."""
    slow = [0.7]  # the session's first (cold) pass; then a duty rest as long
    fake = ScriptedTranscriber([[asr_words("a b")]], on_call=lambda: time.sleep(slow.pop() if slow else 0.02))
    worker = InterimWorker(fake, store, interval=1.0, max_duty=0.5, min_new_seconds=0.0)
    t0 = time.monotonic()
    for k in range(13):  # a record every half interval, as 1 s records with passes every 2 s
        time.sleep(max(0.0, t0 + 0.5 * k - time.monotonic()))
        worker.offer("s", 0, 0, pcm(0.5 * (k + 1)))
    assert worker.wait_idle(30)
    worker.stop()
    ages = [t.started - t.offered_at for t in worker.timings("s")]
    assert len(ages) >= 5, ages
    later = sorted(ages[2:])
    assert later[len(later) // 2] < 0.15, f"passes ran on stale snapshots: ages {ages}"

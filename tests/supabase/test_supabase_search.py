"""Full-text search in Supabase: ranked, stemmed, final rows only, and under the same RLS."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from contracts.segments import TranscriptSegment, WindowRecord
from stores.base import MATCH_END, MATCH_START, Session, SessionProgress
from stores.supabase import SupabaseTranscriptStore
from testkit.supabase_stack import SupabaseStack
from tests.supabase.test_supabase_rls import rest, rows

NewSession = Callable[..., Session]


def _commit(store: SupabaseTranscriptStore, sid: str, *texts: str) -> None:
    segs = [TranscriptSegment(sid, 0, i, 2.0 * i, 2.0 * i + 2, t, speaker="S1") for i, t in enumerate(texts)]
    store.commit_window(WindowRecord(sid, 0, 0, 16_000 * 2 * len(texts)), segs, SessionProgress(sid, 1, 0))


def test_search_ranks_stems_and_respects_row_level_security(stack: SupabaseStack, new_session: NewSession) -> None:
    store = SupabaseTranscriptStore(stack.url, stack.service_key)
    word = "zebra" + uuid.uuid4().hex[:6]  # unique to this test: other tests share the database
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    mine = new_session(owner=alice).session_id
    theirs = new_session(owner=bob).session_id
    _commit(store, mine, f"the {word} budget was approved", f"{word} {word} approved again", "nothing here")
    _commit(store, theirs, f"{word} budget cuts were approved")
    store.put_interim(mine, 1, [TranscriptSegment(mine, 1, 0, 6.0, 8.0, f"{word} interim", is_final=False)])

    # Service role: every session, or only those given; stems match ("approve" finds "approved").
    hits = store.search(f"{word} APPROVE", session_ids=None, limit=10)
    assert {h.session_id for h in hits} == {mine, theirs}
    assert all(h.text != f"{word} interim" for h in hits)
    only_mine = store.search(f"{word} approve", session_ids=[mine], limit=10)
    assert [h.segment_index for h in only_mine] == [1, 0]  # two matches of the word rank first
    assert f"{MATCH_START}{word}{MATCH_END}" in only_mine[0].snippet
    assert only_mine[0].speaker == "S1" and only_mine[0].start == 2.0
    assert store.search(f"{word} missingword", session_ids=None, limit=10) == []
    assert store.search("& | ! :*", session_ids=None, limit=10) == []  # tsquery syntax is not run

    # A signed-in user calling the function directly sees only their own meetings' rows.
    body = {"p_words": f"{word} approve"}
    got = rows(rest(stack, "POST", "rpc/flowbot_search", stack.user_token(alice), body))
    assert {r["session_id"] for r in got} == {mine}
    got = rows(rest(stack, "POST", "rpc/flowbot_search", stack.user_token(bob), body))
    assert {r["session_id"] for r in got} == {theirs}
    assert rest(stack, "POST", "rpc/flowbot_search", None, body).status_code == 401

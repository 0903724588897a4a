"""The bundled 0.5B model on a short meeting: it answers instead of looping (issue 23 item 3).

The meeting is the second half of the real-speech concatenation (testkit/corpus.py,
reference text: a telephone introduction, card names, digits, a song line and a novel read
aloud; 85 words in 31 s). With the summary items free-form, the model wrote "The participants
agreed or decided that they should not hear that in New Jersey now." over and over inside one
summary string until the output limit (1,024 tokens, 509 s on a busy 2-core box), and the
notes fell back. Summary items are now one sentence each (``control/llm/generator.py``).
"""

from __future__ import annotations

import re

import pytest

from contracts.segments import TranscriptSegment, Word
from control.llm.chat import ChatReply, ChatRequest
from control.llm.generator import LlmNotesGenerator
from control.llm.local import LlamaCppChat
from control.notes import FallbackNotesGenerator, OfflineNotesGenerator

pytestmark = pytest.mark.slow

UTTERANCES = [
    ("S1", 41.3, 43.4, "Well, there isn't that much difference."),
    ("S1", 43.5, 47.8, "At least you know, they all call me a Yankee down here, so what can I say?"),
    ("S2", 47.9, 49.4, "Oh, I don't hear that in New Jersey now."),
    ("S3", 49.8, 51.2, "seven of clubs"),
    ("S4", 51.5, 52.9, "two nine three four zero"),
    (
        "S5",
        53.3,
        58.9,
        "had he married a more a amiable woman he might have been made still more respectable than he was",
    ),
    ("S3", 59.3, 60.4, "five five"),
    ("S6", 60.6, 65.1, "feels like these days go on forever"),
    ("S5", 65.5, 68.7, "he might even have been made amiable himself"),
    ("S3", 69.1, 72.1, "eight of spades four of clubs seven of hearts"),
]


def segments() -> list[TranscriptSegment]:
    out = []
    for i, (speaker, start, end, text) in enumerate(UTTERANCES):
        step = (end - start) / len(text.split())
        words = tuple(Word(start + k * step, start + (k + 1) * step, " " + w) for k, w in enumerate(text.split()))
        out.append(TranscriptSegment("short", i // 5, i % 5, start, end, text, speaker, words))
    return out


def test_bundled_model_writes_notes_for_a_short_meeting_without_looping(local_model: LlamaCppChat) -> None:
    replies: list[ChatReply] = []

    class Recording:
        name, context_tokens = local_model.name, local_model.context_tokens

        def complete(self, request: ChatRequest, timeout: float) -> ChatReply:
            replies.append(local_model.complete(request, timeout))
            return replies[-1]

    primary = LlmNotesGenerator(Recording(), max_output_tokens=512, deadline=600)
    notes = FallbackNotesGenerator(primary, OfflineNotesGenerator(), timeout=600).generate(segments(), {})
    assert notes.fallback_reason is None, (notes.fallback_reason, replies[-1].text[-300:] if replies else None)
    assert notes.generator == local_model.name
    assert replies and not replies[-1].truncated
    assert 1 <= len(notes.summary) <= 5
    assert all(re.fullmatch(r"[^.!?]+[.!?]", s) for s in notes.summary), notes.summary
    print(f"\n{replies[-1].output_tokens} output tokens: {notes.summary}")

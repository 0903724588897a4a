"""Speaker turns in the text export, and subtitle cues of the lengths players expect (issue 23 item 1)."""

from __future__ import annotations

import re

from contracts.segments import TranscriptSegment, Word
from contracts.turns import speaker_turns
from flowbot.formats import CUE_LINE_CHARS, CUE_LINES, CUE_MAX_S, CUE_MIN_S, render, wrap_lines


def seg(win: int, idx: int, start: float, text: str, speaker: str | None, final: bool = True) -> TranscriptSegment:
    words = tuple(Word(start + i * 0.4, start + i * 0.4 + 0.35, " " + w) for i, w in enumerate(text.split()))
    return TranscriptSegment("s", win, idx, start, words[-1].end, text, speaker, words, is_final=final)


# One sentence of S3 that Whisper cut in three (the page showed three "S3:" lines), with
# the speaker's pauses of 1.6 s and a window join inside it.
KENNEDY = [
    seg(0, 0, 0.5, "and so my fellow", "S3"),
    seg(0, 1, 3.1, "Americans ask not what your country can do for you ask what you can do for", "S3"),
    seg(1, 0, 12.3, "your country.", "S3"),
    seg(1, 1, 13.5, "Thank you.", "S1"),
    seg(1, 2, 14.5, "Next, the budget.", "S2"),
    seg(1, 3, 16.5, "Yes, the budget.", "S2"),
]


def test_consecutive_segments_of_one_speaker_are_one_turn() -> None:
    turns = speaker_turns(KENNEDY)
    assert [(t.speaker, len(t.segments)) for t in turns] == [("S3", 3), ("S1", 1), ("S2", 2)]
    assert turns[0].text == (
        "and so my fellow Americans ask not what your country can do for you ask what you can do for your country."
    )
    assert (turns[0].start, turns[0].end) == (0.5, KENNEDY[2].end)


def test_interim_text_continues_the_current_turn() -> None:
    live = [*KENNEDY[:4], seg(2, 0, 20.0, "and then we", None, final=False)]
    turns = speaker_turns(live)
    assert [t.speaker for t in turns] == ["S3", "S1"]
    assert turns[-1].text == "Thank you. and then we"


def test_two_labels_named_as_one_person_are_one_speaker() -> None:
    turns = speaker_turns([seg(0, 0, 0, "hello there", "S1"), seg(0, 1, 2, "it is me again", "S4")], {"S4": "S1"})
    assert len(turns) == 1


def test_text_export_has_one_line_per_speaker_turn() -> None:
    text = render("text", "s", KENNEDY, {"S3": "John"})
    assert text.splitlines() == [
        "[00:00:00] John: and so my fellow Americans ask not what your country can do for you "
        "ask what you can do for your country.",
        "[00:00:13] S1: Thank you.",
        "[00:00:14] S2: Next, the budget. Yes, the budget.",
    ]


def _cues(body: str, fmt: str) -> list[tuple[float, float, list[str]]]:
    def secs(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    blocks = [b for b in body.split("\n\n") if "-->" in b]
    out = []
    for block in blocks:
        lines = block.splitlines()
        at = next(i for i, ln in enumerate(lines) if "-->" in ln)
        a, b = lines[at].split(" --> ")
        text = lines[at + 1 :]
        if fmt == "vtt":
            text[0] = re.sub(r"^<v [^>]*>", "", text[0])
        out.append((secs(a), secs(b), text))
    return out


def monologue() -> list[TranscriptSegment]:
    """A 30 s Whisper segment (as long as they get), then another speaker."""
    words = " ".join(f"word{i}" for i in range(60))
    return [seg(0, 0, 0.0, words, "S1"), seg(0, 1, 25.0, "Short answer.", "S2")]


def test_subtitle_cues_keep_lengths_players_expect() -> None:
    segments = monologue() + KENNEDY
    segments = sorted(segments, key=lambda s: s.start)
    for fmt in ("srt", "vtt"):
        cues = _cues(render(fmt, "s", segments, {}), fmt)
        assert len(cues) > len(segments) // 2
        for i, (start, end, lines) in enumerate(cues):
            assert 1 <= len(lines) <= CUE_LINES, (fmt, lines)
            assert all(len(line) <= CUE_LINE_CHARS for line in lines), (fmt, lines)
            assert end - start <= CUE_MAX_S + 1e-6, (fmt, start, end)
            following = cues[i + 1][0] if i + 1 < len(cues) else float("inf")
            assert end - start >= min(CUE_MIN_S, following - start) - 1e-3, (fmt, start, end, following)
        # Every word once, in order.
        shown = " ".join(" ".join(lines) for _, _, lines in cues).split()
        shown = [w for w in shown if not w.endswith(":") or w[:-1] not in {"S1", "S2", "S3"}]
        spoken = [w for s in sorted(segments, key=lambda s: s.start) for w in s.text.split()]
        assert sorted(shown) == sorted(spoken)


def test_srt_names_the_speaker_once_per_turn_and_cues_never_mix_speakers() -> None:
    cues = _cues(render("srt", "s", KENNEDY, {"S3": "John"}), "srt")
    named = [lines[0].split(":")[0] for _, _, lines in cues if re.match(r"^(John|S1|S2):", lines[0])]
    assert named == ["John", "S1", "S2"]
    vtt = render("vtt", "s", KENNEDY, {"S3": "John"})
    voices = re.findall(r"<v ([^>]*)>", vtt)
    assert voices[0] == "John" and voices[-1] == "S2" and len(voices) == len(_cues(vtt, "vtt"))


def test_vtt_cue_text_is_escaped() -> None:
    vtt = render("vtt", "s", [seg(0, 0, 0.0, "a <b> & c --> d", "S1")], {})
    assert "&lt;b&gt; &amp; c --&gt; d" in vtt and "c --> d" not in vtt


def test_wrap_lines_balances_two_lines() -> None:
    words = "one two three four five six seven eight nine ten eleven".split()
    lines = wrap_lines(words)
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 6

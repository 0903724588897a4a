"""Each diarized turn's own voice: turns the window diarizer gave to the wrong speaker go back.

The window diarizer's speakers are clusters of 10 s chunks; where one chunk holds
two voices, segmentation-3.0 often keeps them as one local speaker. This module
embeds each long-enough turn on its own (:func:`regroup_turns`, wrapped around the
offline pipeline by :func:`with_turn_check`) and gives it to the window speaker
whose voice it is; :meth:`processor.speakers.SessionSpeakerRegistry.assign_turns`
compares the same turn embeddings with the session's earlier voices.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.settings import Settings, Switch
from processor.diarization import BOUNDARY_TOLERANCE, Diarization, Diarizer, SpeakerTurn, unit_vector
from processor.windowing import PAUSE_DB_BELOW_SPEECH, frame_db

if TYPE_CHECKING:
    from processor.capped_embeddings import SpeakerEmbedder
    from processor.vad import SpeechMap

log = logging.getLogger("processor.speakers")


#: Unit-norm voice embedding of a stretch of float32 16 kHz audio (None when too short to tell).
TurnEmbedder = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class TurnCheck:
    """Knobs of :func:`regroup_turns`, measured on the real-speech dev set (docs/diarization.md).

    The window diarizer's speakers are clusters of 10 s chunks: where one chunk
    holds two voices, segmentation-3.0 often keeps them as one local speaker,
    and a whole turn of one voice ends up with another (2.9 s of the singer under
    the reader's speaker in ``returning``). Each turn long enough for CAM++ is
    embedded on its own and moves to the window speaker whose voice it is
    (:func:`regroup_turns`), or to the session speaker of an earlier window whose
    voice it is (:meth:`SessionSpeakerRegistry.assign_turns`). Measured on the real
    dev set (both CTranslate2 ISAs): the 9 turns that moved sat 0.17-0.70 closer to
    the speaker they joined than to their own, and 0.11-0.43 from it; cpWER - WER
    fell from 21.4 to 9.7 points on ``returning``, 23.5 to 18.4 on ``concat`` and
    35.6 to 31.4 on ``squeezed`` (AVX2), and no figure of sample, concat, squeezed,
    returning or the flite meeting got worse (docs/quality.md).
    """

    #: Turns shorter than this are not embedded (CAM++ needs 0.5 s; shorter embeddings are noise).
    min_seconds: float = 0.75
    #: Longer turns are embedded on their middle this long: the same moves on the dev set with
    #: 2, 3 or 4 s or whole turns, at 0.6x the CPU of whole turns with 2 s.
    max_seconds: float = 2.0
    #: A turn moves only when this much closer (cosine distance) to the other speaker than to its own.
    margin: float = 0.1
    #: ... and within this distance of it (the registry's match threshold): a turn unlike every
    #: voice of the window stays where the diarizer put it.
    max_distance: float = 0.45
    #: A turn is first cut at each pause inside it this long (or longer) that leaves pieces of
    #: at least ``min_seconds``, and each piece is checked on its own: segmentation-3.0 runs
    #: back-to-back turns of two voices into one turn (squeezed's clips, 0.1 s apart). Measured
    #: on the dev set, both ISAs: squeezed cpWER - WER 31.4 -> 28.4 points (AVX2), returning
    #: 9.7 -> 7.1; concat, sample and flite unchanged; 0.05 s pauses or 12-15 dB moved the
    #: figures by up to 4.5 points either way, 0.1 s and 20-30 dB only gained. 0 turns it off.
    min_pause_seconds: float = 0.1
    #: A checked turn at least this far from its own speaker's voice and ``new_voice_others`` from
    #: every other speaker of its window is a voice of its own: it becomes a window speaker of
    #: its own (``<speaker>+<start>``, its turn embedding as its voice), which joins a session
    #: speaker within ``new_voice_match`` or founds one (:meth:`SessionSpeakerRegistry.assign`).
    #: 0 = off (here; FLOWBOT_SPEAKER_NEW_VOICES, on by default, sets 0.7): measured on the dev set
    #: (docs/diarization.md, both ISAs) it found concat's and squeezed's missing voices and cut
    #: final cpWER - WER by 2.5-10 points, DER by 2.2-9.2; concat shows a seventh live label (the
    #: split telephone voice, merged at the end as before).
    new_voice_own: float = 0.0
    new_voice_others: float = 0.6
    new_voice_match: float = 0.55
    #: A new-voice turn must be Silero speech (a frame at ``processor.vad.THRESHOLD``) over at least
    #: this share of its span, where the window's VAD is known (0: off). returning +0.5 s founded a 7th
    #: speaker from a 1.01 s piece with 25 % speech; the kept new-voice pieces held 62-100 % (round 29).
    new_voice_speech: float = 0.5
    #: A piece of ``2 * change_piece`` or more whose voice sits at least ``change_suspect`` from its
    #: speaker's is scanned for a change of voice with no pause (:func:`split_at_changes`) and cut
    #: where the voices of its two sides sit ``change_distance`` apart or more. 0 = off. Measured on
    #: the dev set (replayed, both ISAs): returning cpWER - WER 7.1 (6.1 AVX-512) -> 3.1 (2.0)
    #: points, DER 13.8 -> 11.9 %, nothing else moved; with 0.75 s pieces concat lost a voice.
    change_distance: float = 0.5
    change_suspect: float = 0.3
    #: The scan's embeddings: ``min_seconds`` long, one every ``change_hop`` seconds (0.25 s gave the
    #: same figures on the dev set, embedding 277 instead of 270 s of audio; none 252 s).
    change_hop: float = 0.5
    #: A cut at a change leaves at least this much (seconds) on each side.
    change_piece: float = 1.0
    #: A turn too short to embed goes to an adjacent turn's speaker when segmentation-3.0's frames
    #: under it hold that speaker's activity at least this share of its own's (:func:`settle_short_turns`).
    #: 0 = off. Measured on the dev set (replayed, both ISAs): final cpWER - WER concat 9.7 -> 8.7 points,
    #: squeezed 15.5 -> 12.9 (AVX2; 12.9 -> 10.8 AVX-512), returning 3.1 -> 2.6 (2.0 -> 1.5), DER and speaker
    #: counts unchanged; 0.25 gave the same, 1.0 and 0.01 less; moving the overlapping-speech turns too
    #: raised sample's DER 6.6 -> 9.6 %.
    short_share: float = 0.5


def regroup_turns(
    diarization: Diarization,
    audio: np.ndarray,
    embed: TurnEmbedder,
    check: TurnCheck | None = None,
    speech: SpeechMap | None = None,
) -> Diarization:
    """``diarization`` with each turn given to the window speaker its own voice matches.

    Turns too short to embed first join a neighbour segmentation-3.0 also heard under them
    (:func:`settle_short_turns`). Turns are then cut at their pauses (:func:`split_at_pauses`) and, where their voice
    changes with no pause, at the change (:func:`split_at_changes`). Every exclusive turn
    (piece) of at least ``check.min_seconds`` is embedded on its own
    (``embed`` over the middle ``check.max_seconds`` of its stretch of ``audio``, the
    window's samples) and kept in ``turn_voices`` (the registry compares it with the
    session's voices: :meth:`SessionSpeakerRegistry.assign_turns`). A turn whose
    embedding is closer to another local speaker's embedding than to its own
    speaker's by ``check.margin``, and within ``check.max_distance`` of it, goes to
    that speaker, with the overlapping-speech turns over its span. Speakers'
    embeddings stay as the diarizer computed them. ``speech``: the window's VAD (:func:`new_voices`).
    """
    check = check or TurnCheck()
    voice_of = _span_embedder(audio, embed)
    diarization = settle_short_turns(diarization, check)  # before the cuts: its labels are the activity's
    diarization = split_at_changes(split_at_pauses(diarization, audio, check), voice_of, check)
    voices = {lab: u for lab, vec in diarization.embeddings.items() if (u := unit_vector(vec)) is not None}
    heard: dict[float, np.ndarray] = {}
    moves: dict[int, str] = {}
    for i, turn in enumerate(diarization.turns):
        own = voices.get(turn.speaker)
        if own is None or turn.end - turn.start < check.min_seconds:
            continue
        vec = voice_of(*_middle(turn.start, turn.end, check.max_seconds))
        if vec is None:
            continue
        heard[turn.start] = vec
        others = {lab: float(1.0 - vec @ v) for lab, v in voices.items() if lab != turn.speaker}
        if not others:
            continue
        best = min(others, key=lambda lab: (others[lab], lab))
        mine = float(1.0 - vec @ own)
        if others[best] < min(mine - check.margin, check.max_distance):
            moves[i] = best
            log_move("turn moved to its voice", turn, best, mine, others[best])
    if not heard:
        return diarization
    return new_voices(with_moves(replace(diarization, turn_voices=heard), moves), check, speech)


def _middle(start: float, end: float, most: float) -> tuple[float, float]:
    """The middle ``most`` seconds of [start, end) (all of it when shorter)."""
    middle, half = (start + end) / 2, min(end - start, most) / 2
    return middle - half, middle + half


def _span_embedder(audio: np.ndarray, embed: TurnEmbedder) -> Callable[[float, float], np.ndarray | None]:
    """``embed`` of ``audio[start:end]`` (seconds), each span embedded once."""
    done: dict[tuple[int, int], np.ndarray | None] = {}

    def voice_of(start: float, end: float) -> np.ndarray | None:
        key = (round(start * SAMPLE_RATE), round(end * SAMPLE_RATE))
        if key not in done:
            done[key] = unit_vector(embed(audio[key[0] : key[1]]))
        return done[key]

    return voice_of


def split_at_changes(
    diarization: Diarization, voice_of: Callable[[float, float], np.ndarray | None], check: TurnCheck
) -> Diarization:
    """``diarization`` with each suspect exclusive turn cut where its voice changes with no pause.

    A turn of at least ``2 * check.change_piece`` whose voice (its middle, as the check
    embeds it) sits ``check.change_suspect`` or more from its speaker's embedding is cut
    at :func:`change_point`, and each side again, while a change is found. The pieces keep
    their turn's speaker (the turn check then decides each). Off when
    ``check.change_distance`` is 0.
    """
    if check.change_distance <= 0:
        return diarization
    voices = {lab: u for lab, vec in diarization.embeddings.items() if (u := unit_vector(vec)) is not None}
    todo, turns = list(diarization.turns), []
    while todo:
        turn = todo.pop(0)
        cut, own = None, voices.get(turn.speaker)
        if own is not None and turn.end - turn.start >= 2 * check.change_piece:
            vec = voice_of(*_middle(turn.start, turn.end, check.max_seconds))
            if vec is not None and 1.0 - vec @ own >= check.change_suspect:
                cut = change_point(turn, voice_of, check)
        if cut is None:
            turns.append(turn)
            continue
        todo[:0] = [SpeakerTurn(turn.start, cut, turn.speaker), SpeakerTurn(cut, turn.end, turn.speaker)]
    if len(turns) == len(diarization.turns):
        return diarization
    return replace(diarization, turns=tuple(turns))


def change_point(
    turn: SpeakerTurn, voice_of: Callable[[float, float], np.ndarray | None], check: TurnCheck
) -> float | None:
    """Where the voice of ``turn`` changes most (seconds), if its sides sit ``check.change_distance`` apart.

    ``turn`` is embedded over ``check.min_seconds`` every ``check.change_hop``; each cut on
    that grid leaving ``check.change_piece`` on both sides is scored by the cosine distance
    between the mean voice of the embeddings wholly on its left and on its right.
    """
    size, hop = check.min_seconds, check.change_hop
    starts = np.arange(turn.start, turn.end - size + 1e-9, hop)
    heard = [(a, v) for a in starts if (v := voice_of(float(a), float(a) + size)) is not None]
    best, best_distance = None, check.change_distance
    for k in range(1, len(starts)):
        cut = float(starts[k])
        if cut - turn.start < check.change_piece - 1e-9 or turn.end - cut < check.change_piece - 1e-9:
            continue
        left = unit_vector(sum((v for a, v in heard if a + size <= cut + 1e-9), np.zeros(1)))
        right = unit_vector(sum((v for a, v in heard if a >= cut - 1e-9), np.zeros(1)))
        if left is None or right is None:
            continue
        if (distance := float(1.0 - left @ right)) >= best_distance:
            best, best_distance = cut, distance
    return best


#: Marks a window speaker made of turns that sound like no speaker of their window (:func:`new_voices`).
NEW_VOICE = "+"


def new_voices(diarization: Diarization, check: TurnCheck, speech: SpeechMap | None = None) -> Diarization:
    """``diarization`` with each turn unlike every speaker of its window given a window speaker of its own.

    A turn whose voice (``turn_voices``) is at least ``check.new_voice_own`` from its
    speaker's embedding and ``check.new_voice_others`` from every other speaker's becomes
    speaker ``<speaker>+<start>`` with its own voice as embedding (segmentation-3.0
    kept concat's 1.4 s digits clip inside two other voices' speakers: the pieces sat
    0.8-1.1 from their own speaker, 0.8-1.1 from the others). With ``speech`` (the window's
    VAD) the turn must also be speech over ``check.new_voice_speech`` of its span: a stretch
    of mostly noise sounds like nobody too. Off when ``check.new_voice_own`` is 0.
    """
    if check.new_voice_own <= 0:
        return diarization
    voices = {lab: u for lab, vec in diarization.embeddings.items() if (u := unit_vector(vec)) is not None}
    moves: dict[int, str] = {}
    found: dict[str, np.ndarray] = {}
    for i, turn in enumerate(diarization.turns):
        vec, own = diarization.turn_voices.get(turn.start), voices.get(turn.speaker)
        if vec is None or own is None or float(1.0 - vec @ own) < check.new_voice_own:
            continue
        span = (int(turn.start * SAMPLE_RATE), int(turn.end * SAMPLE_RATE))
        if speech is not None and speech.share(*span) < check.new_voice_speech:
            continue
        if all(float(1.0 - vec @ v) >= check.new_voice_others for lab, v in voices.items() if lab != turn.speaker):
            moves[i] = f"{turn.speaker}{NEW_VOICE}{turn.start:.2f}"
            found[moves[i]] = vec
            log_move("turn is a voice of its own", turn, moves[i], float(1.0 - vec @ own), 0.0)
    if not moves:
        return diarization
    moved = with_moves(diarization, moves)
    return replace(moved, embeddings={**diarization.embeddings, **{k: v.astype(np.float32) for k, v in found.items()}})


def settle_short_turns(diarization: Diarization, check: TurnCheck) -> Diarization:
    """``diarization`` with each exclusive turn under ``check.min_seconds`` given to the speaker of a turn
    next to it when segmentation-3.0's frames under it hold that speaker's activity too.

    Such a turn is too short to embed, so the turn check never hears it; it goes to the
    speaker of an adjacent turn (one ending or starting within :data:`BOUNDARY_TOLERANCE`)
    whose local speakers were active under it at least ``check.short_share`` as many frames
    as its own speaker's (:meth:`processor.diarization.LocalActivity.heard`). Only the
    exclusive turns (and so the words) move: the overlapping-speech turns stay as
    segmentation-3.0 gave them. Off when ``check.short_share`` is 0 or there is no activity.
    """
    if check.short_share <= 0 or diarization.activity is None:
        return diarization
    turns, moves = diarization.turns, {}
    for i, turn in enumerate(turns):
        if turn.end - turn.start >= check.min_seconds:
            continue
        heard = diarization.activity.heard(turn.start, turn.end)
        sides = [t.speaker for t in _adjacent(turns, i) if t.speaker != turn.speaker]
        best = max(sides, key=lambda lab: heard.get(lab, 0), default=None)
        if best is not None and heard.get(best, 0) >= max(1.0, check.short_share * heard.get(turn.speaker, 0)):
            moves[i] = best
            log_move("short turn joined its neighbour", turn, best, 0.0, 0.0)
    if not moves:
        return diarization
    return replace(diarization, turns=tuple(replace(t, speaker=moves.get(i, t.speaker)) for i, t in enumerate(turns)))


def _adjacent(turns: tuple[SpeakerTurn, ...], i: int) -> list[SpeakerTurn]:
    """The turns just before and after ``turns[i]`` that lie within :data:`BOUNDARY_TOLERANCE` of it."""
    near = [turns[j] for j in (i - 1, i + 1) if 0 <= j < len(turns)]
    return [t for t in near if min(abs(t.end - turns[i].start), abs(turns[i].end - t.start)) <= BOUNDARY_TOLERANCE]


def split_at_pauses(diarization: Diarization, audio: np.ndarray, check: TurnCheck) -> Diarization:
    """``diarization`` with each exclusive turn cut at the middle of the pauses inside it.

    A pause is ``check.min_pause_seconds`` or more of 10 ms frames at least
    :data:`processor.windowing.PAUSE_DB_BELOW_SPEECH` under the turn's speech (its
    90th-percentile frame); the cut next to the shortest piece goes until every
    piece is at least ``check.min_seconds`` long, so that each can be embedded. The pieces keep
    their turn's speaker (the turn check then decides each); overlapping-speech turns
    are unchanged.
    """
    if check.min_pause_seconds <= 0:
        return diarization
    turns: list[SpeakerTurn] = []
    for turn in diarization.turns:
        edges = [turn.start, *pauses_in(audio, turn.start, turn.end, check.min_pause_seconds), turn.end]
        while len(edges) > 2:
            # Drop the cut next to the shortest piece (on its shorter neighbour's side) until all are long enough.
            lengths = [b - a for a, b in itertools.pairwise(edges)]
            k = int(np.argmin(lengths))
            if lengths[k] >= check.min_seconds:
                break
            if k == 0 or (k < len(lengths) - 1 and lengths[k + 1] < lengths[k - 1]):
                del edges[k + 1]
            else:
                del edges[k]
        turns.extend(SpeakerTurn(a, b, turn.speaker) for a, b in itertools.pairwise(edges))
    if len(turns) == len(diarization.turns):
        return diarization
    return replace(diarization, turns=tuple(turns))


def pauses_in(audio: np.ndarray, start: float, end: float, min_pause: float) -> list[float]:
    """Middles (seconds, window timeline) of the pauses of ``audio[start:end]``, in order.

    A pause is a run of at least ``min_pause`` seconds of 10 ms frames that are
    :data:`processor.windowing.PAUSE_DB_BELOW_SPEECH` under the stretch's 90th-percentile frame.
    """
    stretch = audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
    db = frame_db(stretch.astype(np.float64), SAMPLE_RATE // 100)
    if len(db) < 2:
        return []
    quiet = np.concatenate([[False], db < np.percentile(db, 90) - PAUSE_DB_BELOW_SPEECH, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    runs = zip(edges[::2], edges[1::2], strict=True)  # [first, last + 1) frame of each quiet run
    return [start + (a + b) / 2 / 100 for a, b in runs if (b - a) / 100 >= min_pause - 1e-9]


def log_move(message: str, turn: SpeakerTurn, to: str, own: float, new: float) -> None:
    log.debug(
        message,
        extra={
            "start": turn.start,
            "end": turn.end,
            "from": turn.speaker,
            "to": to,
            "distance_own": round(own, 3),
            "distance_new": round(new, 3),
        },
    )


def with_moves(diarization: Diarization, moves: dict[int, str]) -> Diarization:
    """``diarization`` with turn ``i`` relabelled ``moves[i]``, overlapping-speech turns over its span too."""
    if not moves:
        return diarization
    turns = tuple(SpeakerTurn(t.start, t.end, moves[i]) if i in moves else t for i, t in enumerate(diarization.turns))
    moved = [(diarization.turns[i], to) for i, to in moves.items()]
    speech: list[SpeakerTurn] = []
    for st in diarization.speech_turns:
        pieces = [st]
        for turn, to in moved:
            pieces = [q for p in pieces for q in _move_span(p, turn, to)]
        speech.extend(pieces)
    return replace(diarization, turns=turns, speech_turns=tuple(speech))


def _move_span(piece: SpeakerTurn, turn: SpeakerTurn, to: str) -> list[SpeakerTurn]:
    """``piece`` with the part under ``turn`` (same speaker) given to ``to``."""
    if piece.speaker != turn.speaker or piece.end <= turn.start or piece.start >= turn.end:
        return [piece]
    out = []
    if piece.start < turn.start:
        out.append(SpeakerTurn(piece.start, turn.start, piece.speaker))
    out.append(SpeakerTurn(max(piece.start, turn.start), min(piece.end, turn.end), to))
    if piece.end > turn.end:
        out.append(SpeakerTurn(turn.end, piece.end, piece.speaker))
    return out


class TurnCheckingDiarizer:
    """A :class:`processor.diarization.Diarizer` that checks each turn's voice (:func:`regroup_turns`)."""

    def __init__(self, inner: Diarizer, embed: TurnEmbedder, check: TurnCheck | None = None) -> None:
        self.inner = inner
        self.embed = embed
        self.check = check or TurnCheck()

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """The inner diarizer's turns, each turn with the window speaker its voice matches."""
        return regroup_turns(self.inner.diarize(audio, speech), audio, self.embed, self.check, speech)


def campplus_turn_embedder(embedder: SpeakerEmbedder) -> TurnEmbedder:
    """A :data:`TurnEmbedder` over the diarizer's own CAM++ (a
    :class:`processor.capped_embeddings.SpeakerEmbedder`), with its front end:
    Kaldi fbank, mean-normalised; under 0.5 s of audio gives None."""
    import torch

    from processor.campplus import fbank
    from processor.capped_embeddings import MIN_FRAMES

    def embed(audio: np.ndarray) -> np.ndarray | None:
        if len(audio) < SAMPLE_RATE // 2:
            return None
        feats = fbank(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]).numpy()
        if len(feats) < MIN_FRAMES:
            return None
        feats = feats - feats.mean(axis=0, keepdims=True)
        return unit_vector(embedder.embed(feats[None].astype(np.float32))[0])

    return embed


def turn_check_of(settings: Settings) -> TurnCheck | None:
    """The turn check the settings ask for (None when ``speaker_turn_check`` is off)."""
    if settings.speaker_turn_check == Switch.OFF:
        return None
    if settings.speaker_new_voices == Switch.ON:
        return TurnCheck(new_voice_own=0.7)
    return TurnCheck()


def with_turn_check(diarizer: Diarizer, check: TurnCheck | None = None) -> Diarizer:
    """``diarizer`` wrapped in a :class:`TurnCheckingDiarizer` using its own CAM++, where it has one.

    The offline pipeline with capped embeddings (the default) exposes its CAM++;
    other pipelines (published ones, full-mask embeddings) are returned as they are.
    """
    from processor.capped_embeddings import CappedEmbeddingDiarization

    pipeline = getattr(diarizer, "pipeline", None)
    if not isinstance(pipeline, CappedEmbeddingDiarization):
        return diarizer
    return TurnCheckingDiarizer(diarizer, campplus_turn_embedder(pipeline.embedder), check)

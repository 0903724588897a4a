"""Session speaker registry: window-local diarization labels -> stable session labels.

Every ~30 s window is diarized on its own, so its labels (``SPEAKER_00`` ...) mean nothing
across windows. The registry keeps one centroid embedding per session speaker (``S1``, ``S2``
...) and maps each window speaker to the nearest centroid under a cosine-distance threshold,
or to a new speaker when its speech is evidence enough (else a pending voice). The centroids
follow a voice through the meeting (speech-weighted mean, weight capped): S1 stays S1.

The state is plain JSON (:meth:`SessionSpeakerRegistry.state`); the engine
stores it with each committed window (``SessionProgress.speaker_state``) and
rebuilds the registry from it after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import WindowSpeaker
from contracts.settings import Settings
from processor.diarization import (
    Diarization,
    Diarizer,
    IdentityMapper,
    SpeakerMapper,
    SpeakerTurn,
    turns_overlap_seconds,
    unit_vector,
)
from processor.turn_check import NEW_VOICE, TurnCheck, log_move, turn_check_of, with_moves
from processor.voice_evidence import one_to_one, one_turn_pieces, voices_left

log = logging.getLogger(__name__)

STATE_VERSION = 1


class SpeakerStateError(ValueError):
    """A stored registry state cannot be read back (wrong version or shape)."""


@dataclass
class _Speaker:
    label: str
    centroid: np.ndarray | None  # unit-norm, or None for a speaker never embedded
    seconds: float


def _speaker_of(item: dict[str, Any]) -> _Speaker:
    centroid = unit_vector(item["centroid"]) if item.get("centroid") is not None else None
    return _Speaker(str(item["label"]), centroid, float(item["seconds"]))


def _item_of(s: _Speaker) -> dict[str, Any]:
    centroid = None if s.centroid is None else [round(float(x), 6) for x in s.centroid]
    return {"label": s.label, "centroid": centroid, "seconds": round(s.seconds, 3)}


class SessionSpeakerRegistry:
    """:class:`processor.diarization.SpeakerMapper` keyed on embedding centroids.

    ``threshold``: cosine distance under which a window speaker is an existing
    session speaker. ``min_new_speaker_seconds``: a window speaker that matches
    nobody becomes a new session speaker only with at least this much speech;
    shorter ones join an existing speaker instead of inventing one from a cough
    or from the fragment of a turn that opens a window: the closest by voice
    that no other speaker of the window took (so a quick exchange keeps both
    speakers), or without a usable embedding the speaker of the neighbouring
    turn (in the window, or the one heard last before it). A speaker the first
    window founded on a fragment (nobody else had spoken) is provisional: the
    next unmatched voice with enough speech adopts its label.
    ``max_weight_seconds`` caps how much past speech outweighs a new window.
    ``turn_check``: with it, :meth:`assign_turns` also gives a turn whose own voice
    (``Diarization.turn_voices``) is clearly an earlier session speaker's to that speaker.
    ``pending_seconds``: a window speaker left over by the one-to-one match with less speech
    than this, within ``threshold`` of another speaker of its window, is too little evidence
    for a new voice (its window's clustering split one voice: concat's telephone voice, 1.9 s
    0.35 from its other half, founded a phantom): it is shown as that speaker and kept as a
    pending voice, which a later window speaker matching it founds once their speech adds
    up to ``pending_seconds`` or when no speaker of its window is that close. Leftovers under
    ``pending_seconds`` cut from one turn found one speaker (:func:`one_turn_pieces`); a session
    speaker heard for under ``pending_seconds`` (a noisy centroid) matches within ``young_threshold``.
    """

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        threshold: float = 0.5,
        *,
        min_new_speaker_seconds: float = 1.0,
        max_weight_seconds: float = 120.0,
        pending_seconds: float = 3.0,
        young_threshold: float = 0.55,
        session: str | None = None,
        turn_check: TurnCheck | None = None,
    ) -> None:
        if not 0.0 < threshold <= 2.0:
            raise ValueError(f"threshold must be a cosine distance in (0, 2], got {threshold}")
        self.threshold = threshold
        self.min_new_speaker_seconds = min_new_speaker_seconds
        self.max_weight_seconds = max_weight_seconds
        self.pending_seconds = pending_seconds
        self.young_threshold = max(threshold, young_threshold)
        self.session = session
        self.turn_check = turn_check
        self._speakers: dict[str, _Speaker] = {}
        self._next = 1
        #: Session speaker heard last in the previous window: the neighbouring turn of
        #: a fragment that opens a window.
        self._last: str | None = None
        #: Voices heard with too little speech to found a speaker, each shown as the voice of
        #: its window it sat closest to (``_Speaker.label`` is that session label).
        self._pending: list[_Speaker] = []
        if state:
            self._load(state)

    # --- state -------------------------------------------------------------
    def _load(self, state: dict[str, Any]) -> None:
        version = state.get("version")
        if version != STATE_VERSION:
            raise SpeakerStateError(f"unsupported speaker state version {version!r}")
        try:
            for item in state["speakers"]:
                spk = _speaker_of(item)
                self._speakers[spk.label] = spk
            # Absent in states written before pending voices were kept.
            self._pending = [_speaker_of(item) for item in state.get("pending", [])]
            self._next = int(state["next"])
            last = state.get("last")  # absent in states written before it was kept
            self._last = str(last) if last in self._speakers else None
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeakerStateError(f"malformed speaker state: {exc}") from exc

    def state(self) -> dict[str, Any]:
        """JSON-serialisable registry state (lists of floats, no numpy types)."""
        return {
            "version": STATE_VERSION,
            "next": self._next,
            "last": self._last,
            "speakers": [_item_of(s) for s in self._speakers.values()],
            "pending": [_item_of(s) for s in self._pending],
        }

    @property
    def labels(self) -> list[str]:
        """Session labels in order of first appearance."""
        return list(self._speakers)

    # --- mapping -----------------------------------------------------------
    def _new(self, centroid: np.ndarray | None, seconds: float) -> str:
        label = f"S{self._next}"
        self._next += 1
        self._speakers[label] = _Speaker(label, centroid, seconds)
        return label

    def _teach(self, spk: _Speaker, emb: np.ndarray | None, seconds: float) -> None:
        """Move ``spk``'s centroid towards ``emb`` (speech-weighted, capped) and add its speech."""
        if emb is not None:
            if spk.centroid is None:
                spk.centroid = emb
            else:
                w = min(spk.seconds, self.max_weight_seconds)
                merged = spk.centroid * w + emb * max(seconds, 1e-3)
                spk.centroid = unit_vector(merged) if unit_vector(merged) is not None else spk.centroid
        spk.seconds += seconds

    def _closest(self, emb: np.ndarray | None, taken: set[str]) -> str | None:
        """Closest session speaker by voice, preferring ones no other speaker of this
        window is mapped to (the window's clustering said they differ); None without
        an embedding."""
        known = [s for s in self._speakers.values() if s.centroid is not None]
        if emb is None or not known:
            return None
        free = [s for s in known if s.label not in taken] or known
        return min(free, key=lambda s: (float(1.0 - emb @ s.centroid), s.label)).label

    def _provisional(self, emb: np.ndarray | None, taken: set[str]) -> str | None:
        """A session speaker founded on a fragment (a window that held nothing longer),
        for an unmatched voice with enough speech to adopt: its centroid was a guess."""
        weak = [s for s in self._speakers.values() if s.seconds < self.min_new_speaker_seconds and s.label not in taken]
        if not weak:
            return None
        if emb is not None and any(s.centroid is not None for s in weak):
            weak = [s for s in weak if s.centroid is not None]
            return min(weak, key=lambda s: (float(1.0 - emb @ s.centroid), s.label)).label
        return weak[0].label

    def _match(
        self, valid: list[str], embs: dict[str, np.ndarray | None], left: dict[str, np.ndarray]
    ) -> tuple[dict[str, str], dict[str, _Speaker], dict[str, tuple[float, str]]]:
        """One-to-one match of the window speakers with a usable embedding to the session speakers,
        then of those left over to the pending voices: the session label of each matched, the
        pending voice of each matched to one, and each one's nearest session speaker."""
        known = [s for s in self._speakers.values() if s.centroid is not None]
        mapping: dict[str, str] = {}
        nearest: dict[str, tuple[float, str]] = {}
        if valid and known:
            dist = self._distances(valid, embs, left, known)
            limit = [self.threshold if s.seconds >= self.pending_seconds else self.young_threshold for s in known]
            mapping = {valid[r]: known[c].label for r, c in one_to_one(dist, np.array(limit))}
            nearest = {lab: (float(dist[r].min()), known[int(np.argmin(dist[r]))].label) for r, lab in enumerate(valid)}
        rest = [lab for lab in valid if lab not in mapping]
        pending = [p for p in self._pending if p.centroid is not None]
        if not rest or not pending:
            return mapping, {}, nearest
        dist = self._distances(rest, embs, left, pending)
        return mapping, {rest[r]: pending[c] for r, c in one_to_one(dist, self.threshold)}, nearest

    @staticmethod
    def _distances(
        valid: list[str], embs: dict[str, np.ndarray | None], left: dict[str, np.ndarray], voices: list[_Speaker]
    ) -> np.ndarray:
        emb_m = np.stack([embs[lab] for lab in valid])  # type: ignore[misc]
        cen_m = np.stack([s.centroid for s in voices])  # type: ignore[misc]
        dist = 1.0 - emb_m @ cen_m.T
        for r, lab in enumerate(valid):
            if lab in left:  # it lost a turn to a new voice: its remaining turns may be closer
                dist[r] = np.minimum(dist[r], 1.0 - left[lab] @ cen_m.T)
        return dist

    def _found(
        self,
        emb: np.ndarray | None,
        seconds: float,
        held: list[tuple[str, np.ndarray]],
        pending: _Speaker | None,
        mapping: dict[str, str],
    ) -> tuple[str, bool]:
        """Session label of a leftover with enough speech to found a speaker, and whether its
        embedding teaches that speaker: a voice of its window it is shown as while its speech
        (with the pending voice it matched) is under ``pending_seconds``, else a new speaker."""
        total = seconds + (pending.seconds if pending is not None else 0.0)
        shown = self._shown_as(emb, total, held)
        if shown is not None:
            if pending is None:
                self._pending.append(_Speaker(shown, emb, seconds))
            else:
                pending.label = shown
                self._teach(pending, emb, seconds)
            log.debug("voice kept pending", extra={"session": self.session, "shown_as": shown, "seconds": total})
            return shown, False
        if pending is not None:
            self._pending = [p for p in self._pending if p is not pending]
            return self._new(pending.centroid, pending.seconds), True
        return self._provisional(emb, set(mapping.values())) or self._new(None, 0.0), True

    def _shown_as(self, emb: np.ndarray | None, seconds: float, held: list[tuple[str, np.ndarray]]) -> str | None:
        """The voice of this window a leftover with ``seconds`` of speech is too little evidence
        to tell apart from: the closest it holds, within ``threshold``, under ``pending_seconds``."""
        if emb is None or not held or seconds >= self.pending_seconds:
            return None
        dist, label = min((float(1.0 - emb @ v), k) for k, v in held)
        return label if dist < self.threshold else None

    def _join(self, lab: str, diarization: Diarization, mapping: dict[str, str], closest: str | None) -> str:
        """Session speaker for a window speaker too short to found one.

        By voice when its embedding is usable; otherwise (unsure) the speaker of
        the neighbouring turn: another speaker of this window next to its turns,
        or for a fragment alone in its window, whoever spoke last before it.
        """
        if closest is not None:
            return closest
        mine = [t for t in diarization.turns if t.speaker == lab]
        others = [t for t in diarization.turns if t.speaker != lab and t.speaker in mapping]
        if mine and others:

            def gap(t: SpeakerTurn) -> float:
                return min(max(0.0, max(t.start, m.start) - min(t.end, m.end)) for m in mine)

            return mapping[min(others, key=lambda t: (gap(t), t.start)).speaker]
        if self._last is not None:
            return self._last
        return max(self._speakers.values(), key=lambda s: (s.seconds, s.label)).label

    def assign(self, diarization: Diarization) -> dict[str, str]:
        """Map window-local labels to session labels and update the centroids.

        A window speaker the turn check made of a turn that sounds like no speaker
        of its window (:func:`processor.turn_check.new_voices`) first joins the
        closest session speaker with enough speech within ``turn_check.new_voice_match``
        (one turn's embedding is noisier than a window speaker's), leaving its
        centroid as it is; otherwise it is mapped like any other window speaker. A window
        speaker that lost a turn to a new voice is matched by whichever is closer to each
        session speaker: its diarizer embedding (which still holds the voice that left) or
        the voice of its remaining turns (:func:`voices_left`; squeezed under AVX2: 0.50 ->
        0.39 from the singer's speaker, which it then joined instead of founding a phantom).
        """
        joined = self._new_voices_heard_before(diarization)
        left = voices_left(diarization)
        if not joined:
            return self._assign(diarization, left)
        rest = replace(
            diarization,
            turns=tuple(t for t in diarization.turns if t.speaker not in joined),
            embeddings={k: v for k, v in diarization.embeddings.items() if k not in joined},
        )
        return {**self._assign(rest, left), **joined}

    def _new_voices_heard_before(self, diarization: Diarization) -> dict[str, str]:
        """The session speaker each new-voice window speaker is (within ``turn_check.new_voice_match``)."""
        check = self.turn_check
        floor = self.min_new_speaker_seconds
        known = [s for s in self._speakers.values() if s.centroid is not None and s.seconds >= floor]
        if check is None or check.new_voice_own <= 0 or not known:
            return {}
        out = {}
        for lab, vec in diarization.embeddings.items():
            if NEW_VOICE not in lab or (u := unit_vector(vec)) is None:
                continue
            dist, label = min((float(1.0 - u @ s.centroid), s.label) for s in known)
            if dist < check.new_voice_match:
                out[lab] = label
        return out

    def _pieces(
        self, diarization: Diarization, rest: list[str], embs: dict[str, np.ndarray | None], seconds: dict[str, float]
    ) -> dict[str, str]:
        """The leftovers ``rest`` that would each found a speaker with under ``pending_seconds`` and
        were cut from one turn (:func:`one_turn_pieces`), each mapped to the one that stands for
        them; that one takes their speech and the speech-weighted mean of their voices (``embs``
        and ``seconds`` are updated), so one turn founds at most one speaker."""
        short = [
            lab
            for lab in rest
            if embs[lab] is not None and self.min_new_speaker_seconds <= seconds.get(lab, 0.0) < self.pending_seconds
        ]
        pieces = one_turn_pieces(diarization, short, seconds)
        for lead in set(pieces.values()):
            group = [lead, *(lab for lab, to in pieces.items() if to == lead)]
            vecs = [(v, seconds[x]) for x in group if (v := embs[x]) is not None]
            embs[lead] = unit_vector(sum(v * w for v, w in vecs))
            seconds[lead] = sum(seconds[x] for x in group)
        for lab in pieces:
            seconds[lab] = 0.0  # its speech is its group's now
        return pieces

    def _assign(self, diarization: Diarization, left: dict[str, np.ndarray]) -> dict[str, str]:
        local = sorted({t.speaker for t in diarization.turns} | set(diarization.embeddings))
        if not local:
            return {}
        end = max((t.end for t in diarization.turns), default=0.0)
        seconds = turns_overlap_seconds(diarization.turns, 0.0, end)
        embs = {lab: unit_vector(diarization.embeddings.get(lab)) for lab in local}
        mapping, hits, nearest = self._match([lab for lab in local if embs[lab] is not None], embs, left)
        rest = [lab for lab in local if lab not in mapping and lab not in hits]
        pieces = self._pieces(diarization, rest, embs, seconds)
        # Matched and founding embeddings move centroids; leftovers never do.
        teaches = set(mapping)

        # The voices of this window's speakers already mapped (matched, or founding): a
        # short leftover this close to one of them is shown as it.
        held = [(mapping[lab], emb) for lab in mapping if (emb := embs[lab]) is not None]

        # Longest speakers first, so a short leftover can join an established one.
        for lab in sorted(local, key=lambda x: (-seconds.get(x, 0.0), x)):
            if lab in mapping or lab in pieces:
                continue
            if seconds.get(lab, 0.0) >= self.min_new_speaker_seconds or not self._speakers:
                mapping[lab], teach = self._found(embs[lab], seconds.get(lab, 0.0), held, hits.get(lab), mapping)
                if teach:
                    teaches.add(lab)
                    if embs[lab] is not None:
                        held.append((mapping[lab], embs[lab]))  # type: ignore[arg-type]
            else:
                closest = self._closest(embs[lab], set(mapping.values()))
                mapping[lab] = self._join(lab, diarization, mapping, closest)
        mapping.update({lab: mapping[lead] for lab, lead in pieces.items()})

        for lab in local:
            self._teach(self._speakers[mapping[lab]], embs[lab] if lab in teaches else None, seconds.get(lab, 0.0))

        final = max(diarization.turns, key=lambda t: (t.end, t.start), default=None)
        if final is not None:
            self._last = mapping.get(final.speaker, self._last)
        log.debug(
            "window speakers mapped",
            extra={
                "session": self.session,
                "mapping": mapping,
                "distances": {k: round(v[0], 3) for k, v in nearest.items()},
            },
        )
        return mapping

    def assign_turns(self, diarization: Diarization) -> tuple[Diarization, dict[str, str]]:
        """:meth:`assign`, then each turn whose own voice is clearly another session speaker's goes there.

        The window diarizer can keep two voices as one local speaker, and when the
        other voice's session speaker was heard in an earlier window, a turn of it is
        best compared with that speaker's centroid: a turn (with a ``turn_voices``
        entry) at least ``turn_check.margin`` closer to the centroid of a session
        speaker heard before this window (with at least ``min_new_speaker_seconds``)
        than to its own local speaker's embedding, and within
        ``turn_check.max_distance`` of it, is relabelled ``<local>><session>`` and
        mapped to that speaker, even where another speaker of the window holds it
        too (one voice in two window speakers; founding a speaker for it made a
        phantom). Returns the window's diarization with those turns relabelled and
        the mapping of every local label.
        """
        check = self.turn_check
        before = {
            s.label: s.centroid
            for s in self._speakers.values()
            if s.centroid is not None and s.seconds >= self.min_new_speaker_seconds
        }
        mapping = self.assign(diarization)
        if check is None or not before or not diarization.turn_voices:
            return diarization, mapping
        moves: dict[int, str] = {}
        for i, turn in enumerate(diarization.turns):
            vec, own = diarization.turn_voices.get(turn.start), unit_vector(diarization.embeddings.get(turn.speaker))
            if vec is None or own is None or turn.speaker not in mapping:
                continue
            others = {k: float(1.0 - vec @ c) for k, c in before.items() if k != mapping[turn.speaker]}
            if not others:
                continue
            best = min(others, key=lambda k: (others[k], k))
            mine = float(1.0 - vec @ own)
            if others[best] < min(mine - check.margin, check.max_distance):
                moves[i] = f"{turn.speaker}>{best}"
                mapping[moves[i]] = best
                log_move("turn moved to a session voice", turn, best, mine, others[best])
        return with_moves(diarization, moves), mapping


def assign_window(mapper: SpeakerMapper, diarization: Diarization) -> tuple[Diarization, dict[str, str]]:
    """A window's diarization (turns moved to their session voice where the registry does that) and
    the session label of each of its local labels."""
    if isinstance(mapper, SessionSpeakerRegistry):
        return mapper.assign_turns(diarization)
    return diarization, mapper.assign(diarization)


def build_mapper(settings: Settings, state: dict[str, Any] | None) -> SpeakerMapper:
    """Registry for the configured diarization, rebuilt from ``state`` (may be empty)."""
    if settings.diarization == "none":
        return IdentityMapper(state)
    if state and "version" not in state:
        # A session started with diarization off and resumed with it on.
        state = None
    return SessionSpeakerRegistry(state, settings.speaker_match_threshold, turn_check=turn_check_of(settings))


def window_speakers(diarization: Diarization, mapping: dict[str, str]) -> tuple[WindowSpeaker, ...]:
    """Each session speaker of a window with its speech and voice, as stored with the window.

    ``mapping`` is what :meth:`SessionSpeakerRegistry.assign` returned for
    ``diarization``. Window-local speakers mapped to one session label become one
    entry: their exclusive speech added up, their unit embeddings averaged with
    their speech as weights (None when none was usable). Rounded to 6 decimals
    (about 1.5 kB of JSON for a 192-dim CAM++ embedding).
    """
    end = max((t.end for t in diarization.turns), default=0.0)
    seconds = turns_overlap_seconds(diarization.turns, 0.0, end)
    grouped: dict[str, list[str]] = {}
    for local in sorted({t.speaker for t in diarization.turns} | set(diarization.embeddings)):
        grouped.setdefault(mapping.get(local, local), []).append(local)
    out = []
    for label, locals_ in grouped.items():
        total = sum(seconds.get(x, 0.0) for x in locals_)
        vecs = [
            (u, max(seconds.get(x, 0.0), 1e-3))
            for x in locals_
            if (u := unit_vector(diarization.embeddings.get(x))) is not None
        ]
        mean = unit_vector(sum(u * w for u, w in vecs)) if vecs else None
        emb = None if mean is None else tuple(round(float(x), 6) for x in mean)
        out.append(WindowSpeaker(label, round(total, 3), emb))
    return tuple(out)


def diarize_in_windows(
    diarizer: Diarizer,
    mapper: SpeakerMapper,
    audio: np.ndarray,
    bounds: Sequence[tuple[int, int]],
    sample_rate: int = SAMPLE_RATE,
) -> list[SpeakerTurn]:
    """Diarize ``audio`` window by window and map labels to session speakers.

    What the processor does per committed window, in one loop: turns come back
    on the recording's timeline with session labels. Used by the file CLI,
    the DER tests and ``bench/diarization.py``.
    """
    out: list[SpeakerTurn] = []
    for start, end in bounds:
        diarized = diarizer.diarize(np.ascontiguousarray(audio[start:end], dtype=np.float32))
        window, mapping = assign_window(mapper, diarized)
        offset = start / sample_rate
        out.extend(
            SpeakerTurn(t.start + offset, t.end + offset, mapping.get(t.speaker, t.speaker)) for t in window.turns
        )
    return out

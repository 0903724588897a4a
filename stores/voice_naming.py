"""Names that follow a voice: remember a named speaker's voice, name it again in later sessions.

Three operations over a session's stores and its owner's voice library
(:class:`stores.base.VoiceLibrary`), shared by the API (``control/api.py``),
the CLI, the end-of-session workflow (``control/workflow.py``) and, live, the
processor after each committed window (``processor/live_voices.py``); it sits
with the stores so both layers can use it:

- :meth:`Voices.remember`: keep the embedding of a session speaker the owner
  just named, under that name (merged into the owner's voice of that name, if
  any, so a voice gets better with each meeting);
- :meth:`Voices.name_session`: name the session speakers that match one of the
  owner's voices; each is recorded as named by voice, with its score;
- :meth:`Voices.undo`: give a speaker named by voice its label back, and never
  name it by voice again in that session;
- :meth:`Voices.follow_relabel`: after the end-of-meeting relabel, a naming of a
  live label merged away goes with its name to the final label.

Only the session's owner's voices are ever read for a session
(``session.user_id``). Thresholds are settings measured on real recordings
(docs/voices.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.settings import Settings
from contracts.voices import (
    NamingState,
    SessionVoice,
    Voice,
    VoiceNaming,
    match_voices,
    merged_embedding,
    session_voices,
)
from stores.base import Session, TranscriptStore, VoiceLibrary

log = logging.getLogger(__name__)


class VoiceError(ValueError):
    """A voice operation that cannot be done as asked (the message says why)."""


@dataclass(frozen=True)
class Voices:
    """Voice naming for sessions whose speakers were embedded with ``model``."""

    library: VoiceLibrary
    transcripts: TranscriptStore
    model: str
    #: Cosine similarity a session speaker needs to a remembered voice to be named after it.
    min_score: float
    #: Seconds of speech a speaker needs to be remembered or named by voice.
    min_seconds: float

    @classmethod
    def from_settings(cls, library: VoiceLibrary, transcripts: TranscriptStore, settings: Settings) -> Voices:
        """Thresholds and embedding model from ``settings``."""
        return cls(
            library,
            transcripts,
            model=settings.diarization.value,
            min_score=settings.voice_match_min_score,
            min_seconds=settings.voice_min_seconds,
        )

    def speakers(self, session_id: str) -> list[SessionVoice]:
        """The session's speakers with their embeddings, from the stored speaker registry."""
        progress = self.transcripts.load_progress(session_id)
        return session_voices(progress.speaker_state if progress else None)

    def remember(self, session: Session, label: str, name: str) -> Voice:
        """Keep ``label``'s voice in the owner's library as ``name``; raises :class:`VoiceError`."""
        speaker = next((s for s in self.speakers(session.session_id) if s.label == label), None)
        if speaker is None:
            raise VoiceError(f"speaker {label!r} has no voice embedding in this session (diarization off?)")
        if speaker.seconds < self.min_seconds:
            raise VoiceError(
                f"speaker {label!r} spoke {speaker.seconds:.1f} s; "
                f"{self.min_seconds:.0f} s are needed to remember a voice"
            )
        now = time.time()
        same = [v for v in self.library.voices(session.user_id, model=self.model) if v.name == name]
        if same:
            old = same[0]
            embedding, seconds = merged_embedding(old, speaker)
            voice = Voice(old.voice_id, old.owner_id, name, self.model, embedding, seconds, old.created_at, now)
        else:
            voice = Voice(
                str(uuid.uuid4()), session.user_id, name, self.model, speaker.embedding, speaker.seconds, now, now
            )
        self.library.save_voice(voice)
        log.info(
            "voice remembered",
            extra={"session": session.session_id, "speaker": label, "voice": voice.voice_id, "merged": bool(same)},
        )
        return voice

    def name_session(self, session: Session, speakers: Sequence[SessionVoice] | None = None) -> list[VoiceNaming]:
        """Name the session's unnamed speakers that match one of the owner's voices.

        ``speakers`` defaults to the stored registry's (:meth:`speakers`); an
        end-of-meeting reconciliation passes its own. A speaker the owner named,
        or whose voice naming was undone, is left alone, and a name the session
        already uses is not given twice.
        """
        sid = session.session_id
        voices = self.library.voices(session.user_id, model=self.model)
        if not voices:
            return []
        names = self.transcripts.speakers(sid)
        done = self.library.namings(sid)
        taken = {n for label, n in names.items() if n != label}
        candidates = [
            s
            for s in (speakers if speakers is not None else self.speakers(sid))
            # A label the end-of-meeting reconciliation merged away has no rows left: not a speaker.
            if s.label in names and s.label not in done and names[s.label] == s.label
        ]
        free = [v for v in voices if v.name not in taken]
        out = []
        for match in match_voices(candidates, free, min_score=self.min_score, min_seconds=self.min_seconds):
            naming = VoiceNaming(
                sid, match.label, match.voice_id, match.name, match.score, NamingState.NAMED, time.time()
            )
            # The naming is recorded first: a crash in between leaves a record the owner can undo,
            # never a name nobody can tell came from a voice.
            self.library.record_naming(naming)
            self.transcripts.rename_speaker(sid, match.label, match.name)
            out.append(naming)
        log.info(
            "speakers named by voice",
            extra={
                "session": sid,
                "candidates": len(candidates),
                "voices": len(free),
                "named": {n.label: round(n.score, 3) for n in out},
            },
        )
        return out

    def follow_relabel(self, session: Session) -> list[VoiceNaming]:
        """Carry namings of live labels the end-of-meeting relabel merged away to their final label.

        The relabel gives a final label without a name the name of a live label merged into it
        (:meth:`contracts.segments.SpeakerRelabel.carry_names`). When that name came from a voice,
        the naming goes with it, so the owner still sees it was named by voice and can undo it; an
        undone naming goes too (the owner said that speech is not that voice), to a final label
        that has no name. The merged label's own record stays, as history. Returns what moved.
        """
        sid = session.session_id
        relabel = self.transcripts.speaker_relabel(sid)
        if relabel is None or not relabel.changed:
            return []
        namings = self.library.namings(sid)
        names = self.transcripts.speakers(sid)
        merged_away = {old for moves in relabel.windows.values() for old in moves} - set(relabel.after)
        moved = []
        for old in sorted(merged_away & set(namings)):
            naming = namings[old]
            finals = sorted({new for moves in relabel.windows.values() for o, new in moves.items() if o == old})
            wanted = naming.name if naming.state == NamingState.NAMED else None
            for new in finals:
                if new in namings or names.get(new, new) != (wanted or new):
                    continue
                carried = VoiceNaming(sid, new, naming.voice_id, naming.name, naming.score, naming.state, naming.at)
                self.library.record_naming(carried)
                namings[new] = carried
                moved.append(carried)
                break
        if moved:
            log.info("namings by voice follow the relabel", extra={"session": sid, "moved": [n.label for n in moved]})
        return moved

    def renamed_by_owner(self, session: Session, label: str, name: str) -> None:
        """The owner renamed ``label``: a name it had by voice no longer stands (marked undone)."""
        naming = self.library.namings(session.session_id).get(label)
        if naming is not None and naming.state == NamingState.NAMED and naming.name != name:
            self.library.record_naming(
                VoiceNaming(
                    session.session_id,
                    label,
                    naming.voice_id,
                    naming.name,
                    naming.score,
                    NamingState.UNDONE,
                    time.time(),
                )
            )

    def undo(self, session: Session, label: str) -> VoiceNaming:
        """Give ``label`` back its label; it is not named by voice again in this session."""
        sid = session.session_id
        naming = self.library.namings(sid).get(label)
        if naming is None or naming.state != NamingState.NAMED:
            raise VoiceError(f"speaker {label!r} was not named by voice in this session")
        if self.transcripts.speakers(sid).get(label) != naming.name:
            raise VoiceError(f"speaker {label!r} was renamed since it was named by voice; rename it instead")
        undone = VoiceNaming(sid, label, naming.voice_id, naming.name, naming.score, NamingState.UNDONE, time.time())
        self.library.record_naming(undone)
        self.transcripts.rename_speaker(sid, label, label)
        log.info("voice naming undone", extra={"session": sid, "speaker": label, "voice": naming.voice_id})
        return undone

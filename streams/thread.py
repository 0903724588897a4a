"""Any :class:`streams.base.StreamConsumer` in a background thread, whatever the backend.

``flowbot serve`` and ``flowbot transcribe`` run their consumer next to other
work (ingest, the web front, a file being decoded) with :class:`ConsumerThread`;
``flowbot process`` runs nothing else and uses :func:`run_until_signalled`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from streams.base import StreamConsumer

log = logging.getLogger(__name__)

#: What ``signal.signal`` answers: a handler, ``SIG_DFL``/``SIG_IGN`` or None.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class ConsumerThread:
    """Runs a consumer in a daemon thread; :meth:`check` surfaces its crash in the caller's thread."""

    def __init__(self, consumer: StreamConsumer, *, name: str = "processor") -> None:
        self.consumer = consumer
        #: What ``consumer.run()`` returned, once it has.
        self.code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.code = self.consumer.run()
        except BaseException as exc:  # surfaced to the caller by check()
            self.error = exc
            log.exception("processor stopped on an error")

    def start(self) -> ConsumerThread:
        """Start consuming."""
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        """True while the consumer runs."""
        return self._thread.is_alive()

    def check(self) -> None:
        """Re-raise a consumer crash in the caller's thread."""
        if self.error is not None:
            raise RuntimeError(f"processor failed: {self.error}") from self.error

    def stop(self, timeout: float | None = 60.0) -> int | None:
        """Ask the consumer to stop gracefully (checkpoint) and wait; its exit code, None if still running."""
        self.consumer.stop()
        self._thread.join(timeout)
        return self.code


def run_until_signalled(
    consumer: StreamConsumer, *, poll_s: float = 0.2, check: Callable[[], None] | None = None
) -> int:
    """Run ``consumer`` until it ends, or until SIGTERM/SIGINT ask it to stop gracefully.

    Call from the main thread (signal handlers live there). The consumer runs in
    a :class:`ConsumerThread`; a signal only stops it, so its processors still
    checkpoint. ``check`` is called every ``poll_s``: what it raises (a model that
    failed to load in the background) stops the consumer the same graceful way and
    is re-raised. Returns the consumer's exit code; a crash is re-raised.
    """
    thread = ConsumerThread(consumer)
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    failure: Exception | None = None
    try:
        thread.start()
        while thread.is_alive() and not stop.wait(poll_s):
            try:
                if check is not None:
                    check()
            except Exception as exc:  # re-raised once the consumer has stopped
                failure = exc
                break
        code = thread.stop(timeout=None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure is not None:
        raise failure
    thread.check()
    return 0 if code is None else code


def _stop_on_signals(
    stop: threading.Event,
) -> dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None]:
    """SIGTERM and SIGINT set ``stop`` from now on; returns the handlers they had."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal", extra={"signal": signal.Signals(signum).name})
        stop.set()

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

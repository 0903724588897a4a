"""The progress bar ``flowbot transcribe`` and ``flowbot retranscribe`` draw on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.t0 = time.monotonic()

    def __call__(self, done: float, total: float | None) -> None:
        """Seconds of audio ``done`` of ``total`` (None while the length is unknown)."""
        if not self.enabled:
            return
        if total is None:
            msg = f"decoding... {done:7.1f} s transcribed"
            frac = 0.0
        else:
            frac = min(1.0, done / total) if total else 1.0
            bar = "#" * int(frac * 30)
            msg = f"[{bar:<30}] {done:7.1f}/{total:.1f} s  {time.monotonic() - self.t0:5.1f} s elapsed"
        if self.tty:
            sys.stderr.write("\r" + msg)
            sys.stderr.flush()
        elif int(frac * 10) > self.last_decile and total is not None:
            self.last_decile = int(frac * 10)
            sys.stderr.write(msg + "\n")

    def close(self) -> None:
        """End the bar's line (on a terminal)."""
        if self.enabled and self.tty:
            sys.stderr.write("\n")

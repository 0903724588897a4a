"""Device memory and utilisation of an NVIDIA GPU, sampled in a thread during a bench run."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from typing import Any

log = logging.getLogger(__name__)


class GpuSampler(threading.Thread):
    """Samples device memory used (MiB) and utilisation (%) every ``period`` s: NVML, else nvidia-smi."""

    def __init__(self, period: float = 0.5, index: int = 0) -> None:
        super().__init__(name="gpu-sampler", daemon=True)
        self.period = period
        self.index = index
        self.samples: list[tuple[float, float]] = []  # (memory MiB, utilisation %)
        self.source = ""
        self._halt = threading.Event()
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        """Is there an NVIDIA device to read?"""
        try:
            import pynvml

            pynvml.nvmlInit()
            return bool(pynvml.nvmlDeviceGetCount())
        except Exception:
            return shutil.which("nvidia-smi") is not None

    def _read_nvml(self) -> Any:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)

        def read() -> tuple[float, float]:
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            return float(mem.used) / 2**20, float(util.gpu)

        return read

    def _read_smi(self) -> Any:
        query = ["nvidia-smi", f"--id={self.index}", "--query-gpu=memory.used,utilization.gpu"]

        def read() -> tuple[float, float]:
            out = subprocess.run([*query, "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True)
            mem, util = (float(x) for x in out.stdout.strip().splitlines()[0].split(","))
            return mem, util

        return read

    def run(self) -> None:
        try:
            read = self._read_nvml()
            self.source = "nvml"
        except Exception:
            read = self._read_smi()
            self.source = "nvidia-smi"
        while not self._halt.is_set():
            try:
                sample = read()
            except Exception as exc:  # a sampler must never take the bench down
                log.warning("gpu sample failed: %s", exc)
                return
            with self._lock:
                self.samples.append(sample)
            self._halt.wait(self.period)

    def take(self) -> list[tuple[float, float]]:
        """The samples since the last call."""
        with self._lock:
            out, self.samples = self.samples, []
        return out

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self.join(timeout=5)

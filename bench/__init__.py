"""Benchmarks, run from the repository root as ``python -m bench.NAME`` (see each module's docstring).

Set here, before any bench module imports a model runtime: OpenMP threads that
sleep instead of spinning (with spinning, float32 on 2 busy cores ran 4-8x
slower) and no pyannote telemetry.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

"""Optional parts of flowbot: what each needs and the command that installs it.

``bash scripts/demo`` installs only the demo profile (the package, PyAV, CPU
PyTorch, tiny.en, the offline diarization weights). A command that needs more
says so in one line naming the ``scripts/setup`` profile that installs it,
instead of a traceback. The profiles themselves are in ``scripts/setup``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """An optional part: its ``scripts/setup`` profile, what it is for, the modules it brings."""

    profile: str
    purpose: str
    modules: tuple[str, ...]

    @property
    def install(self) -> str:
        """The command that installs this part."""
        return f"bash scripts/setup --profile {self.profile}"

    def installed(self) -> bool:
        """Are all of this part's modules importable?"""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def missing(self, what: str) -> str:
        """The one line that says ``what`` needs this part and how to install it."""
        return f"{what} needs {self.purpose}, which is not installed: run `{self.install}`"


LIVE = Part("live", "aiortc (WHIP: the browser's microphone)", ("aiortc",))
SUPABASE = Part("supabase", "supabase-py and PyJWT (the Supabase store)", ("supabase", "realtime", "postgrest", "jwt"))
AWS = Part("aws", "the KCL jars (kclpy-ext) and Java (the Kinesis processor)", ("amazon_kclpy",))
NOTES = Part("notes", "llama-cpp-python and the bundled notes model", ("llama_cpp",))
DEMO = Part("demo", "the diarization packages", ("pyannote", "onnxruntime", "torch"))
#: Every optional part, for finding the one a missing module belongs to.
PARTS = (LIVE, SUPABASE, AWS, NOTES, DEMO)


def part_of(module: str | None) -> Part | None:
    """The part whose missing top-level ``module`` (``ModuleNotFoundError.name``) it installs."""
    top = (module or "").split(".")[0]
    return next((p for p in PARTS if top in p.modules), None)

"""A checkpointer that records what the engine checkpoints, for tests of its safety rules."""

from __future__ import annotations


class ListCheckpointer:
    """Records checkpoints in order, as KCL's checkpointer would store them."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def checkpoint(self, sequence_number: str | None = None) -> None:
        if sequence_number is not None:
            self.values.append(int(sequence_number))

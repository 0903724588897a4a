"""Audio stream backends behind one KCL-shaped interface.

Exports :class:`StreamRecord`, :class:`StreamWriter`, :class:`Checkpointer`,
:class:`RecordProcessor`, :class:`StreamUnavailable` (from :mod:`streams.base`)
and the embedded SQLite stream :class:`EmbeddedStream` (:mod:`streams.embedded`).
The Kinesis writer lives in :mod:`streams.kinesis`.
"""

from streams.base import (
    Checkpointer,
    RecordProcessor,
    StreamRecord,
    StreamUnavailable,
    StreamWriter,
)
from streams.embedded import EmbeddedStream

__all__ = [
    "Checkpointer",
    "EmbeddedStream",
    "RecordProcessor",
    "StreamRecord",
    "StreamUnavailable",
    "StreamWriter",
]

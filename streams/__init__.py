"""Audio stream backends behind one KCL-shaped interface.

Exports the boundary from :mod:`streams.base` (:class:`StreamRecord`,
:class:`StreamWriter`, :class:`StreamConsumer`, :class:`ProcessorFactory`,
:class:`Checkpointer`, :class:`RecordProcessor`, :class:`StreamUnavailable`)
and the embedded SQLite backend (:class:`EmbeddedStream`, the writer, and
:class:`EmbeddedConsumer`, from :mod:`streams.embedded`). The Kinesis backend
is the :mod:`streams.kinesis` package; :mod:`streams.factory` builds the
configured backend's writer and consumer; :mod:`streams.thread` runs any
consumer in a thread.
"""

from streams.base import (
    Checkpointer,
    ProcessorFactory,
    RecordProcessor,
    StreamConsumer,
    StreamRecord,
    StreamUnavailable,
    StreamWriter,
)
from streams.embedded import EmbeddedConsumer, EmbeddedStream

__all__ = [
    "Checkpointer",
    "EmbeddedConsumer",
    "EmbeddedStream",
    "ProcessorFactory",
    "RecordProcessor",
    "StreamConsumer",
    "StreamRecord",
    "StreamUnavailable",
    "StreamWriter",
]

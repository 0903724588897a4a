"""Build the configured stream backend's writer and consumer from settings.

``FLOWBOT_STREAM`` names the backend; a new one adds its choice there
(contracts/settings.py) and one branch to each of :func:`stream_writer` and
:func:`stream_consumer`.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.settings import Settings
from streams.base import ProcessorFactory, RecordProcessor, StreamConsumer, StreamWriter
from streams.embedded import EmbeddedConsumer, EmbeddedStream


def embedded_stream(settings: Settings) -> EmbeddedStream:
    """The single-machine stream file under the data folder."""
    return EmbeddedStream(settings.data_dir / "stream.db")


def embedded_consumer(
    settings: Settings, build: Callable[[], RecordProcessor], stream: EmbeddedStream | None = None
) -> EmbeddedConsumer:
    """The consumer of the single-machine stream (``stream``, or the one under the data folder)."""
    return EmbeddedConsumer(stream or embedded_stream(settings), settings.kcl_application_name, build)


def stream_writer(settings: Settings) -> StreamWriter:
    """Where producers put frames: the embedded stream or Kinesis."""
    if settings.stream == "kinesis":
        from streams.kinesis.writer import KinesisWriter

        return KinesisWriter(settings)
    return embedded_stream(settings)


def stream_consumer(settings: Settings, processors: ProcessorFactory) -> StreamConsumer:
    """What reads the stream and drives ``processors``: the embedded poller or the KCL daemon."""
    if settings.stream == "kinesis":
        from streams.kinesis.daemon import KclDaemon

        return KclDaemon(settings, processors.spec)
    return embedded_consumer(settings, processors.build)

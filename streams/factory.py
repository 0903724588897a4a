"""Build the configured stream writer from settings."""

from __future__ import annotations

from contracts.settings import Settings
from streams.base import StreamWriter
from streams.embedded import EmbeddedStream


def embedded_stream(settings: Settings) -> EmbeddedStream:
    """The single-machine stream file under the data folder."""
    return EmbeddedStream(settings.data_dir / "stream.db")


def stream_writer(settings: Settings) -> StreamWriter:
    """Where producers put frames: the embedded stream or Kinesis."""
    if settings.stream == "kinesis":
        from streams.kinesis.writer import KinesisWriter

        return KinesisWriter(settings)
    return embedded_stream(settings)

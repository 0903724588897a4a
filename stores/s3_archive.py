"""Window audio archive on S3 (AWS mode): ``s3://<bucket>/sessions/<id>/windows/<n>.flac``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

import numpy as np

from contracts.settings import Settings
from stores.archive import decode_flac, encode_flac, window_key

log = logging.getLogger(__name__)


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for ``settings`` (path-style addressing when an endpoint is set)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        region_name=settings.aws_region,
        endpoint_url=settings.s3_endpoint or None,
        # Emulators serve buckets under the path, not as sub-domains of 127.0.0.1.
        config=Config(s3={"addressing_style": "path"}) if settings.s3_endpoint else None,
    )


class S3Archive:
    """:class:`stores.archive.WindowArchive` on an S3 bucket.

    ``put`` is idempotent: a replayed window overwrites the same key with the
    same audio. A single PutObject is atomic, so a crash never leaves half an object.
    """

    def __init__(self, source: Settings | Any, bucket: str | None = None) -> None:
        if isinstance(source, Settings):
            self.client = s3_client(source)
            bucket = bucket or source.archive_bucket
        else:
            self.client = source
        if not bucket:
            raise ValueError("S3Archive needs a bucket (FLOWBOT_ARCHIVE_BUCKET)")
        self.bucket = bucket

    def put(self, session_id: str, window_index: int, pcm: np.ndarray) -> str:
        """Upload the window's audio as FLAC; return its ``s3://`` URI."""
        key = window_key(session_id, window_index)
        body = encode_flac(pcm)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="audio/flac")
        log.debug("window audio archived", extra={"session": session_id, "window": window_index, "bytes": len(body)})
        return f"s3://{self.bucket}/{key}"

    def get(self, uri: str) -> np.ndarray:
        """Download and decode audio written by :meth:`put`."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
            raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
        try:
            obj = self.client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(uri) from None
        return decode_flac(obj["Body"].read())

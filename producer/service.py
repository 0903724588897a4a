"""The per-session producer task (AWS mode: one ECS task per meeting).

It serves RTMP ingest for exactly one session, writes frame records to the
configured stream (Kinesis in AWS) and, on SIGTERM (ECS StopTask), stops
taking audio, flushes, writes the end-of-stream record and exits.

With nginx (the default, as in the container image) nginx-rtmp owns the public
port and checks each publish against the session store through
:mod:`producer.nginx_auth`; an accepted stream is pushed over loopback to an
:class:`RtmpRelay`, which checks the key again with the :class:`IngestHub` and
decodes the audio in this process. ``use_nginx=False`` serves the public port
with the RtmpRelay directly.

Run as ``python -m producer.service`` with ``PRODUCER_SESSION_ID`` and
``PRODUCER_STREAM_KEY`` in the environment (or ``--session-id``/``--stream-key``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.logs import configure_logging
from contracts.settings import Settings
from control.sessions import go_live
from producer.hub import IngestHub
from producer.nginx import NginxFront
from producer.nginx_auth import NginxAuthServer
from producer.rtmp_relay import RtmpRelay
from stores.base import SessionStore, StateConflict
from streams.base import StreamWriter

log = logging.getLogger(__name__)


def run_producer_task(
    settings: Settings,
    session_id: str,
    stream_key: str,
    *,
    writer: StreamWriter | None = None,
    sessions: SessionStore | None = None,
    use_nginx: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Serve one session's ingest until SIGTERM (or ``stop``); returns samples written.

    ``writer``/``sessions`` default to the ones ``settings`` configure.
    """
    writer = writer if writer is not None else _configured_writer(settings)
    sessions = sessions if sessions is not None else _configured_sessions(settings)
    stop = stop or threading.Event()
    _stop_on_signals(stop)
    hub = _session_hub(writer, sessions, stream_key)
    if use_nginx:
        rtmp = RtmpRelay(hub, "127.0.0.1", 0)
    else:
        rtmp = RtmpRelay(hub, settings.host, settings.rtmp_port, max_connections=settings.rtmp_max_connections)
    rtmp.start()
    hub.register(session_id, stream_key)
    nginx = _Nginx()
    work = tempfile.TemporaryDirectory(prefix="flowbot-nginx-")
    try:
        if use_nginx:
            nginx.start(settings, sessions, session_id, rtmp.port, Path(work.name))
        log.info("producer ready", extra={"session": session_id, "rtmp_port": settings.rtmp_port, "nginx": use_nginx})
        stop.wait()
        log.info("producer stopping", extra={"session": session_id})
    finally:
        if nginx.front is not None:
            nginx.front.stop()
        _end_session(hub, session_id)
        rtmp.stop()
        if nginx.auth is not None:
            nginx.auth.stop()
        writer.close()
        work.cleanup()
    samples = hub.stats(session_id).samples
    log.info("producer done", extra={"session": session_id, "samples": samples})
    return samples


def _configured_writer(settings: Settings) -> StreamWriter:
    from streams.factory import stream_writer

    return stream_writer(settings)


def _configured_sessions(settings: Settings) -> SessionStore:
    from stores.factory import session_store

    return session_store(settings)


def _session_hub(writer: StreamWriter, sessions: SessionStore, stream_key: str) -> IngestHub:
    """The task's hub: it marks the session live through the state machine when audio starts."""

    def mark_live(sid: str) -> None:
        with contextlib.suppress(StateConflict):
            go_live(sessions, sid)

    # The end key derives from the launch key, which a relaunched task of this session gets
    # again: the secret of its end of stream stays the one its audio committed to.
    end_key = hashlib.sha256(b"flowbot-ingest-end-key:" + stream_key.encode()).digest()
    return IngestHub(writer, on_live=mark_live, end_key=end_key)


@dataclass
class _Nginx:
    """nginx-rtmp on the public port and the publish check it asks, once started."""

    auth: NginxAuthServer | None = None
    front: NginxFront | None = None

    def start(self, settings: Settings, sessions: SessionStore, session_id: str, ingest_port: int, work: Path) -> None:
        """Start the publish check, then nginx in front of the relay on ``ingest_port``."""
        self.auth = NginxAuthServer(sessions, session_id=session_id)
        self.auth.start()
        self.front = NginxFront(
            rtmp_listen=f"{settings.host}:{settings.rtmp_port}",
            auth_port=self.auth.port,
            ingest_port=ingest_port,
            work_dir=work,
        )
        self.front.start()


def _end_session(hub: IngestHub, session_id: str) -> None:
    """End the session's stream once audio already pushed over loopback has drained into it."""
    deadline = time.monotonic() + 5.0
    while hub.stats(session_id).connected and time.monotonic() < deadline:
        time.sleep(0.05)
    hub.end(session_id)


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def main(argv: list[str] | None = None) -> int:
    """``python -m producer.service``: the container's entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--session-id", default=os.environ.get("PRODUCER_SESSION_ID", ""))
    parser.add_argument("--stream-key", default=os.environ.get("PRODUCER_STREAM_KEY", ""))
    parser.add_argument("--no-nginx", action="store_true", help="serve RTMP without nginx")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    if not args.session_id or not args.stream_key:
        parser.error("a session id and a stream key are required (PRODUCER_SESSION_ID, PRODUCER_STREAM_KEY)")
    run_producer_task(settings, args.session_id, args.stream_key, use_nginx=not args.no_nginx)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The error answer of every flowbot HTTP endpoint: ``{"error": {"code", "message"}}``.

The coordinator API (the Lambda function URL and ``POST /api``), the web front's
pages, feed and downloads, and WHIP ingest all refuse a request by raising
:class:`HttpError`; :func:`error_body` is the one place the JSON body is written.
``code`` is stable (clients branch on it); ``message`` says what is wrong.
"""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str) -> dict[str, Any]:
    """The body of an error answer."""
    return {"error": {"code": code, "message": message}}


class HttpError(Exception):
    """A refused request: HTTP status, stable code and a message for the client.

    ``close`` asks the server to close the connection after answering (a body
    that was refused part-way must never be parsed as the next request).
    """

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close

    def body(self) -> dict[str, Any]:
        """This error's JSON body."""
        return error_body(self.code, self.message)

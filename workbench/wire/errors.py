"""One error family for everything that crosses a process boundary.

Every error workbench raises is a :class:`WorkbenchError`; its kind says what went wrong in a way
that maps to an HTTP status both ways: a server raises ``NotFound("no API named 'x'")`` and its
handler answers 404 with ``{"error": "no API named 'x'"}`` (:func:`error_body`); a client reads that
answer back into the same kind (:func:`error_from_response`). ``str(error)`` is always meant for the
user: what happened and what to do.

Imported inside replicas and on every box: the standard library only.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

__all__ = [
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "Failed",
    "NotFound",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UpstreamFailed",
    "WorkbenchError",
    "error_body",
    "error_from_response",
    "error_text",
    "kind_for_status",
    "parse_retry_after",
]

#: How much of a non-JSON error body is kept as the message.
ERROR_TEXT_LIMIT = 1000


class WorkbenchError(Exception):
    """The root of the family. `status` is the HTTP status the error is (or was) answered with.

    When the error is a server's answer read back by a client: `body` is the decoded JSON,
    `error` the server's own words, `response` the client library's response object, `url` the
    server's address, `api` the API it was about (router calls) and `request_id` the router's
    X-Request-ID (to find the request in `workbench logs`)."""

    #: the status a server answers this kind with, and the kind a client makes of that status
    default_status: ClassVar[int | None] = 500

    def __init__(self, message: str, *, status: int | None = None, body: Any = None,
                 error: str | None = None, api: str | None = None, url: str | None = None,
                 response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status
        self.body = body
        self.error = error if error is not None else message
        self.api = api
        self.url = url
        self.response = response

    @property
    def request_id(self) -> str | None:
        headers = getattr(self.response, "headers", None)
        return headers.get("x-request-id") if headers is not None else None


class BadRequest(WorkbenchError):
    """The input is wrong (a spec, an argument, a request body); nothing was changed."""

    default_status = 400


class Unauthorized(WorkbenchError):
    """A token or API key is missing or wrong (401), or was refused (403)."""

    default_status = 401


class NotFound(WorkbenchError):
    """No such API, host, replica, artifact or file."""

    default_status = 404


class Conflict(WorkbenchError):
    """The request contradicts what exists (a name taken, a splitter still routing to an API)."""

    default_status = 409


class TooLarge(WorkbenchError):
    """A body over its limit."""

    default_status = 413


class Failed(WorkbenchError):
    """An operation ran and failed (a build, a start, an install); the message says why."""

    default_status = 500


class UpstreamFailed(WorkbenchError):
    """What stands behind the server (a replica, an agent, a box) failed or answered badly."""

    default_status = 502


class Unavailable(WorkbenchError):
    """Nothing can take the request now (queue full, no ready replica, shutting down);
    retry after `retry_after` seconds when given."""

    default_status = 503

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Timeout(WorkbenchError):
    """No answer in time. `source` says who gave up: "router" (it answered 504) or "client"."""

    default_status = 504

    def __init__(self, message: str, *, source: Literal["router", "client"] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.source = source


class ConnectionFailed(WorkbenchError):
    """Nothing answered at the address (refused, unreachable, the link dropped)."""

    default_status = None


_BY_STATUS: dict[int, type[WorkbenchError]] = {
    400: BadRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound, 405: BadRequest,
    409: Conflict, 413: TooLarge, 422: BadRequest, 502: UpstreamFailed, 503: Unavailable,
    504: Timeout,
}


def kind_for_status(status: int) -> type[WorkbenchError]:
    """The kind a client makes of an error status (4xx it does not know: BadRequest; 5xx: Failed)."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return kind
    return BadRequest if 400 <= status < 500 else Failed


def status_of(error: BaseException) -> int:
    """The HTTP status a server answers `error` with (500 for anything outside the family)."""
    if isinstance(error, WorkbenchError) and error.status is not None:
        return error.status
    return 500


def error_body(message: str, **extra: Any) -> bytes:
    """The one JSON error answer: ``{"error": message, **extra}``."""
    return json.dumps({"error": message, **extra}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_text(content: bytes, reason: str = "") -> str:
    """The server's own words: JSON ``error`` (workbench) or ``detail`` (FastAPI) or ``message``,
    else the body's text (cut to ERROR_TEXT_LIMIT), else the reason phrase."""
    body = _json_or_none(content)
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value)
    if body is not None:
        return json.dumps(body)
    text = content.decode("utf-8", "replace").strip()
    if len(text) > ERROR_TEXT_LIMIT:
        text = text[:ERROR_TEXT_LIMIT] + "…"
    return text or reason


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(status: int, content: bytes, headers: Mapping[str, str] | None = None, *,
                        reason: str = "") -> WorkbenchError:
    """The error a non-2xx answer stands for, of the kind its status maps to."""
    text = error_text(content, reason)
    message = text or f"HTTP {status}"
    kind = kind_for_status(status)
    body = _json_or_none(content)
    if kind is Unavailable:
        retry = parse_retry_after((headers or {}).get("retry-after"))
        return Unavailable(message, status=status, body=body, error=text, retry_after=retry)
    return kind(message, status=status, body=body, error=text)


def _json_or_none(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None

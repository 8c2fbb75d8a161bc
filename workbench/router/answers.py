"""The router's own answers: the wire's JSON error body (workbench.wire.errors.error_body) with
its status and headers."""

from __future__ import annotations

from workbench.wire.errors import error_body

from .asgi import Send

_JSON = [(b"content-type", b"application/json")]
_RETRY_AFTER = (b"retry-after", b"1")
ASK_FOR_KEY = [(b"www-authenticate", b"Bearer")]  # with a 401


async def error_answer(
    send: Send,
    status: int,
    message: str,
    *,
    request_id: bytes | None = None,
    retry_after: bool = False,
    extra: dict[str, object] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> int:
    """Answer ``{"error": message, **extra}`` with `status`; returns `status`."""
    body = error_body(message, **(extra or {}))
    out = [*_JSON, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    if retry_after:
        out.append(_RETRY_AFTER)
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status

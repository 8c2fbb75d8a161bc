"""Small pieces of the router's answers: API-key checks, JSON errors, traffic-split picks."""

from __future__ import annotations

import hmac
import random

from starlette.types import Send

from workbench.wire.errors import error_body

from .types import SplitRoute

_JSON = [(b"content-type", b"application/json")]
_RETRY_AFTER = (b"retry-after", b"1")


def pick_target(route: SplitRoute) -> str | None:
    total = sum(w for _, w in route.targets if w > 0)
    if total <= 0:
        return None
    x = random.random() * total
    for name, weight in route.targets:
        if weight <= 0:
            continue
        x -= weight
        if x < 0:
            return name
    return route.targets[-1][0]


def check_key(keys: frozenset[str], authorization: bytes | None, api_key: bytes | None,
               name: str) -> str | None:
    """None when the request carries a valid key, else why not."""
    if not keys:
        return (f"API {name!r} has no API keys, and the router requires them because the controller "
                "listens on a non-loopback address: configure keys (routing.api_keys_env)")
    given: bytes | None = None
    if api_key is not None:
        given = api_key.strip()
    elif authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer":
            given = token.strip()
    if not given:
        return "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    found = False
    for key in keys:
        if hmac.compare_digest(given, key.encode()):
            found = True
    return None if found else "invalid API key"


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

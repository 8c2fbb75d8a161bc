"""Reading a client request: the API name from the path, one pass over the headers, the API-key
check, the upstream target, and a traffic splitter's choice of API.

What comes out is an :class:`IncomingRequest`, ready to forward; what cannot be forwarded is
raised as a kind of the wire's error family, which the router answers.
"""

from __future__ import annotations

import hmac
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.wire.errors import BadRequest, Unauthorized, Unavailable

from .api import ApiState
from .asgi import Scope
from .proxy import HOP_BY_HOP, StreamedBody
from .types import SplitRoute

MAX_REQUEST_ID = 200  # longer (or empty) client request ids are replaced by a fresh one
_KEY_HEADERS = (b"authorization", b"x-api-key")


@dataclass(slots=True)
class IncomingRequest:
    """What one client request carries through the attempts: the request line and headers as
    they go upstream (hop-by-hop, Host, Content-Length, X-Request-ID and checked API keys left
    out), and its body once read."""

    method: str
    target: str  # path and query on the replica, e.g. "/v1/x?y=1"
    headers: list[tuple[str, str]]
    request_id: bytes
    content_length: int | None  # as the client declared it
    has_body: bool  # declared with a length > 0, or chunked
    body: bytes | StreamedBody | None = None
    answered_at: float = 0.0  # when a replica's answer (its headers) came, if one did
    payload: Any = None  # the body parsed as JSON, where something parsed it (the front door)


class MalformedRequest(BadRequest):
    """A request the router cannot read as sent (an invalid Content-Length); answered 400 with the
    request id the request was given."""

    def __init__(self, message: str, request_id: bytes) -> None:
        super().__init__(message)
        self.given_request_id = request_id


def api_name(path: str) -> str:
    """The first path segment: ``/echo/v1/x`` → ``echo``."""
    slash = path.find("/", 1)
    return path[1:] if slash < 0 else path[1:slash]


def read_request(
    scope: Scope, name: str, api_keys: frozenset[str], require_api_keys: bool
) -> IncomingRequest:
    """The request of an HTTP (or WebSocket) `scope` addressed to route `name`, in one pass over
    its headers.

    Raises Unauthorized when the route wants an API key the request lacks (keys are checked when
    the route has some or `require_api_keys`), MalformedRequest for an invalid Content-Length."""
    forward: list[tuple[bytes, bytes]] = []  # decoded once all is checked
    request_id: bytes | None = None
    length: bytes | None = None
    chunked = False
    authorization: bytes | None = None
    api_key: bytes | None = None
    connection: bytes | None = None
    for key, value in scope["headers"]:
        if key in HOP_BY_HOP:
            if key == b"connection":
                connection = value
            elif key == b"transfer-encoding":
                chunked = True
            continue
        if key == b"host":
            continue
        if key == b"content-length":
            length = value
            continue
        if key == b"x-request-id":
            request_id = value
            continue
        if key == b"authorization":
            authorization = value
        elif key == b"x-api-key":
            api_key = value
        forward.append((key, value))
    if connection is not None:  # headers the client named hop-by-hop for this connection
        named = {t.strip().lower() for t in connection.split(b",")}
        forward = [(k, v) for k, v in forward if k not in named]

    if api_keys or require_api_keys:
        problem = check_key(api_keys, authorization, api_key, name)
        if problem is not None:
            raise Unauthorized(problem, api=name)
        forward = [(k, v) for k, v in forward if k not in _KEY_HEADERS]

    if request_id is None or not 0 < len(request_id) <= MAX_REQUEST_ID:
        request_id = uuid.uuid4().hex.encode()
    content_length: int | None = None
    if length is not None:
        if not length.isdigit() or len(length) > 18:
            raise MalformedRequest("invalid Content-Length", request_id)
        content_length = int(length)

    return IncomingRequest(
        scope.get("method", "GET"),  # a WebSocket scope has none (its handshake is a GET)
        upstream_target(scope, name),
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in forward],
        request_id,
        content_length,
        chunked or (content_length is not None and content_length > 0),
    )


def upstream_target(scope: Scope, name: str) -> str:
    """Path and query on the replica: the client's path without ``/<name>``, as the client sent
    it (raw, still percent-encoded) when the server passed the raw path on."""
    path: str = scope["path"]
    raw: bytes = scope.get("raw_path") or path.encode()
    prefix_len = len(name) + 1
    rest = raw[prefix_len:] if raw[1:prefix_len] == name.encode() else path[prefix_len:].encode()
    target = rest if rest.startswith(b"/") else b"/" + rest
    query: bytes = scope.get("query_string", b"")
    if query:
        target = target + b"?" + query
    return target.decode("latin-1")


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
    for key in keys:  # every key compared, in constant time each
        if hmac.compare_digest(given, key.encode()):
            found = True
    return None if found else "invalid API key"


def pick_target(route: SplitRoute) -> str | None:
    """One target API by weight (None when no target has weight)."""
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


def split_target(route: SplitRoute, apis: Mapping[str, ApiState]) -> ApiState:
    """The deployed API a traffic splitter sends this request to. Raises Unavailable when it has
    no target with weight, or the chosen one is not deployed."""
    chosen = pick_target(route)
    if chosen is None:
        raise Unavailable(f"traffic splitter {route.name!r} has no target with weight", retry_after=1)
    api = apis.get(chosen)
    if api is None or api.route is None:
        raise Unavailable(f"API {chosen!r} of traffic splitter {route.name!r} is not deployed",
                          retry_after=1)
    return api

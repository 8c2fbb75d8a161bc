"""The router's OpenAI front door: one base URL, ``/openai/v1``, for every model in the fleet.

``GET /openai/v1/models`` lists the models the APIs claim (``openai: {models: [...]}``) in OpenAI's
list format; ``POST /openai/v1/<op>`` reads the JSON body's ``model``, picks the API (or traffic
splitter) that claims it and forwards the request to a replica's ``/v1/<op>``, streamed as any
other answer. What the front door answers itself is in OpenAI's error shape
(``{"error": {"message", "type", "param", "code"}}``), which OpenAI clients read.

Only requests to ``/openai/...`` come here: the path of every other request names its API, and
its body is never parsed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

from workbench.wire.errors import BadRequest, Unauthorized

from .asgi import Receive, Scope, Send
from .request import IncomingRequest, check_key, read_request
from .types import ApiRoute, SplitRoute

FRONT_DOOR = "openai"  # the first path segment (a reserved API name)
_V1 = "/openai/v1"
DEFAULT_BODY_LIMIT = 10 * 1024 * 1024  # before any API is known (ApiRoute's default)
_JSON = (b"content-type", b"application/json")

Route = ApiRoute | SplitRoute
Dispatch = Callable[[Route, IncomingRequest, Receive, Send], Awaitable[None]]


def openai_error_body(message: str, error_type: str, *, param: str | None = None,
                      code: str | None = None) -> bytes:
    """OpenAI's error answer: ``{"error": {"message", "type", "param", "code"}}``."""
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def answer_json(send: Send, status: int, body: bytes,
                      headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    out = [_JSON, (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def openai_error(send: Send, status: int, message: str, error_type: str = "invalid_request_error",
                       *, param: str | None = None, code: str | None = None) -> None:
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if status == 401:
        headers = ((b"www-authenticate", b"Bearer"),)
    elif status == 503:
        headers = ((b"retry-after", b"1"),)
    await answer_json(send, status, openai_error_body(message, error_type, param=param, code=code), headers)


class ModelTable:
    """Which route serves each model name. Deploys refuse a name another API claims
    (workbench/controller/intake.py); should two routes claim one anyway, the first keeps it."""

    __slots__ = ("_claims", "_owner")

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # model → route name
        self._claims: dict[str, tuple[str, ...]] = {}  # route name → its models

    def claim(self, route: str, models: tuple[str, ...]) -> None:
        """`route` serves `models` now (and no longer the ones it claimed before)."""
        self.release(route)
        if models:
            self._claims[route] = models
            for model in models:
                self._owner.setdefault(model, route)

    def release(self, route: str) -> None:
        for model in self._claims.pop(route, ()):
            if self._owner.get(model) == route:
                del self._owner[model]
                for other, models in self._claims.items():  # a second claimant takes it over
                    if model in models:
                        self._owner[model] = other
                        break

    def owner(self, model: str) -> str | None:
        return self._owner.get(model)

    def models(self) -> list[tuple[str, str]]:
        """(model, route name) pairs, by model name."""
        return sorted(self._owner.items())


class NotJson(BadRequest):
    """The front door's request body is not a JSON object with a string `model`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def model_of(body: bytes) -> tuple[str, dict[str, Any]]:
    """The body's `model` and the parsed body; NotJson when there is none."""
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        raise NotJson("the request body is not valid JSON: send a JSON object with a 'model', e.g. "
                      '{"model": "llama-3-8b", "messages": [...]}') from None
    if not isinstance(payload, dict):
        raise NotJson("the request body must be a JSON object with a 'model' (the front door routes by it)")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise NotJson("you must provide a model parameter: the front door routes by the body's 'model'",
                      param="model")
    return model, payload


async def read_whole_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, at most `limit` bytes; None past the limit or when the client left
    (then the answer is 413, or nobody's)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


class FrontDoor:
    """Answers ``/openai/...``; a request for a model goes on through `dispatch` (the router's own
    way of serving a route: a splitter's choice, counters, forwarding)."""

    def __init__(self, routes: Mapping[str, Route], dispatch: Dispatch,
                 keys_required: Callable[[], bool]) -> None:
        self.models = ModelTable()
        self._routes = routes
        self._dispatch = dispatch
        self._keys_required = keys_required

    def body_limit(self, route: Route | None) -> int:
        """The largest body the front door reads: the route's own limit (a splitter's: its
        targets' smallest), or before routing the largest of all."""
        if isinstance(route, ApiRoute):
            return route.max_body_bytes
        routes = self._routes
        if isinstance(route, SplitRoute):
            limits = [t.max_body_bytes for name, _ in route.targets
                      if isinstance(t := routes.get(name), ApiRoute)]
            return min(limits, default=DEFAULT_BODY_LIMIT)
        limits = [r.max_body_bytes for r in routes.values() if isinstance(r, ApiRoute)]
        return max(limits, default=DEFAULT_BODY_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if not (path.startswith(_V1 + "/") and len(path) > len(_V1) + 1):
            await openai_error(send, 404, f"Invalid URL ({method} {path}): the OpenAI front door serves "
                               f"{_V1}/<operation>, e.g. {_V1}/chat/completions", code="unknown_url")
            return
        operation = path[len(_V1):]
        if method == "GET" and (operation in ("/models", "/models/") or operation.startswith("/models/")):
            await self._models(scope, send, unquote(operation[len("/models/"):]))
            return

        length = declared_length(scope)
        limit = self.body_limit(None)
        if length is not None and length > limit:
            await self._too_large(send, limit)
            return
        body = await read_whole_body(receive, limit)
        if body is None:
            await self._too_large(send, limit)  # (or the client left: then nobody reads this)
            return
        try:
            model, payload = model_of(body)
        except NotJson as error:
            await openai_error(send, 400, error.message, param=error.param)
            return
        name = self.models.owner(model)
        route = self._routes.get(name) if name is not None else None
        if route is None:
            await self._model_not_found(send, model)
            return
        limit = self.body_limit(route)
        if len(body) > limit:
            await self._too_large(send, limit, route.name)
            return
        try:
            request = read_request(scope, FRONT_DOOR, route.api_keys, self._keys_required())
        except Unauthorized as error:
            await openai_error(send, 401, error.message.replace(repr(FRONT_DOOR), repr(route.name)),
                               code="invalid_api_key")
            return
        except BadRequest as error:  # an invalid Content-Length
            await openai_error(send, 400, error.message)
            return
        request.body = body
        request.payload = payload
        await self._dispatch(route, request, receive, send)

    async def _models(self, scope: Scope, send: Send, model: str) -> None:
        """GET /models (the list) or /models/<model> (one), of the models the request may use."""
        visible: list[dict[str, Any]] = []
        hidden = 0
        for name, route_name in self.models.models():
            route = self._routes.get(route_name)
            if route is None:
                continue
            if not self._may_use(scope, route):
                hidden += 1
                continue
            visible.append({"id": name, "object": "model", "created": int(route.incarnation),
                            "owned_by": route.name})
        if hidden and not visible:
            await openai_error(send, 401, "an API key is required: send 'Authorization: Bearer <key>' "
                               "with a key of an API that serves a model", code="invalid_api_key")
            return
        if not model:
            await answer_json(send, 200, json.dumps({"object": "list", "data": visible}).encode())
            return
        found = next((m for m in visible if m["id"] == model), None)
        if found is None:
            await self._model_not_found(send, model, [m["id"] for m in visible])
            return
        await answer_json(send, 200, json.dumps(found).encode())

    def _may_use(self, scope: Scope, route: Route) -> bool:
        if not route.api_keys and not self._keys_required():
            return True
        headers = dict(scope["headers"])
        return check_key(route.api_keys, headers.get(b"authorization"), headers.get(b"x-api-key"),
                         route.name) is None

    async def _model_not_found(self, send: Send, model: str, known: list[str] | None = None) -> None:
        names = known if known is not None else [m for m, _ in self.models.models()]
        listed = ", ".join(names) if names else "none: no API names a model (openai: {models: [...]})"
        await openai_error(send, 404, f"The model {model!r} does not exist; the models served here: "
                           f"{listed}", param="model", code="model_not_found")

    async def _too_large(self, send: Send, limit: int, api: str | None = None) -> None:
        whose = f"API {api!r}'s limit, serving.max_body_bytes" if api else "the largest limit of any API"
        await openai_error(send, 413, f"request body over {limit} bytes ({whose})",
                           code="request_too_large")

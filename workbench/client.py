"""Call deployed APIs from Python: ``Client(...).predict("iris", {...})``.

For apps on the workstation that talk to the router (``workbench serve``), by default at
http://127.0.0.1:8765; ``WORKBENCH_URL`` overrides it and ``WORKBENCH_API_KEY`` supplies a key
(sent as ``Authorization: Bearer …``). One pooled keep-alive connection set per client: make
one client and reuse it, preferably as a context manager.

Payloads: a dict or list (or number, bool) is sent as JSON, a str as ``text/plain``, bytes as
``application/octet-stream``; ``json=`` and ``data=`` say it explicitly. Answers: parsed JSON
for JSON, ``str`` for ``text/*``, ``bytes`` otherwise. Every failure is a
:class:`WorkbenchError` (the wire's one error family) that says what went wrong and what to do.
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from workbench.clients.core import DEFAULT, AsyncCore, Call, SyncCore
from workbench.wire.errors import (
    ConnectionFailed,
    NotFound,
    Timeout,
    Unauthorized,
    Unavailable,
    WorkbenchError,
    error_text,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_URL",
    "APINotFound",
    "AsyncClient",
    "Client",
    "ConnectionFailed",
    "PredictionError",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "WorkbenchError",
]

DEFAULT_URL = "http://127.0.0.1:8765"
URL_ENV = "WORKBENCH_URL"
API_KEY_ENV = "WORKBENCH_API_KEY"

_UNSET: Any = object()

Params = Mapping[str, Any] | list[tuple[str, Any]] | None


class APINotFound(NotFound):
    """404 from the router: no API by that name. `apis` lists the ones it knows."""

    def __init__(self, message: str, *, apis: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.apis = apis


class PredictionError(WorkbenchError):
    """The predictor (or the router on its behalf) answered 4xx/5xx. `error` is the server's text."""


# -- building the call (no I/O) ------------------------------------------------------------

def _resolve_url(url: str | None) -> str:
    chosen = url or os.environ.get(URL_ENV) or DEFAULT_URL
    chosen = chosen.strip().rstrip("/")
    if "://" not in chosen:
        chosen = "http://" + chosen
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{chosen!r} is not a router URL such as {DEFAULT_URL}")
    return chosen


def _resolve_key(api_key: str | None) -> str | None:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return key or None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _path(api: str) -> str:
    if not isinstance(api, str) or not api.strip("/"):
        raise ValueError(f"api must be an API name such as 'iris', not {api!r}")
    return "/" + quote(api.strip("/"), safe="/")


def _body(payload: Any, json: Any, data: bytes | str | None) -> tuple[bytes | None, str | None]:
    """The request body and its Content-Type, from exactly one of payload, json= and data=."""
    given = [name for name, value in (("payload", payload), ("data", data)) if value is not None]
    if json is not _UNSET:
        given.append("json")
    if len(given) > 1:
        raise TypeError(f"pass only one of payload, json= and data= (got {', '.join(given)})")
    if json is not _UNSET:
        return _json_bytes(json), "application/json"
    value = data if data is not None else payload
    if value is None:
        return None, None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    if isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8"
    if data is not None:
        raise TypeError(f"data= must be bytes or str, not {type(data).__name__}")
    return _json_bytes(value), "application/json"


def _json_bytes(value: Any) -> bytes:
    try:
        return jsonlib.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the payload cannot be sent as JSON ({exc}); pass bytes or str, or convert it first"
        ) from None


def _headers(content_type: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if content_type:
        merged["Content-Type"] = content_type
    if headers:
        lowered = {key.lower() for key in headers}
        if "content-type" in lowered:
            merged.pop("Content-Type", None)
        merged.update(headers)
    return merged


def _content_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _decode(response: httpx.Response) -> Any:
    """Parsed JSON for JSON answers, str for text/*, bytes otherwise (None for no body)."""
    kind = _content_type(response)
    if not response.content and response.status_code in (204, 205):
        return None
    if kind == "application/json" or kind.endswith("+json"):
        if not response.content:
            return None
        return response.json()
    if kind.startswith("text/"):
        return response.text
    return response.content


def predict_call(
    api: str, payload: Any = None, *, json: Any = _UNSET, data: bytes | str | None = None,
    headers: Mapping[str, str] | None = None, params: Params = None, timeout: float | None = _UNSET,
) -> Call[httpx.Response]:
    """POST the payload to the API's route on the router."""
    content, content_type = _body(payload, json, data)
    return Call("POST", _path(api), params=params, content=content, headers=_headers(content_type, headers),
                timeout=DEFAULT if timeout is _UNSET else timeout, context={"api": api})


# -- reading the answer --------------------------------------------------------------------


class _RouterCore:
    """How the router's answers and failures read: errors that name the API and the fix."""

    base_url: str
    timeout: Any
    _has_key: bool

    def check(self, response: httpx.Response, call: Call[Any]) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        api, url = call.context.get("api", ""), self.base_url
        context: dict[str, Any] = {"api": api, "url": url, "status": status, "response": response}
        error = error_text(response.content)
        detail = f": {error}" if error else ""
        if status in (401, 403):
            if self._has_key:
                hint = f"the API key given (api_key= or {API_KEY_ENV}) was not accepted"
            else:
                hint = f"pass api_key=... to the client or set {API_KEY_ENV}"
            what = "requires an API key" if status == 401 and not self._has_key else "refused the request"
            raise Unauthorized(
                f"the router at {url} {what} for API {api!r} ({status}{detail}); {hint}",
                error=error, **context,
            )
        if status == 404:
            body = _json_or_none(response)
            if isinstance(body, dict) and isinstance(body.get("apis"), list):
                apis = [str(name) for name in body["apis"]]
                known = f"known APIs: {', '.join(apis)}" if apis else "no APIs are deployed"
                raise APINotFound(
                    f"no API named {api!r} at {url}; {known} (see `workbench get`)", apis=apis,
                    error=error, **context,
                )
        if status == 503:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            retry = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise Unavailable(
                f"API {api!r} is unavailable (503{detail}){retry}", retry_after=retry_after, error=error,
                **context,
            )
        if status == 504:
            raise Timeout(
                f"the router timed out waiting for API {api!r} (504{detail}); "
                "the predictor took longer than the API's routing.timeout",
                source="router", error=error, **context,
            )
        reason = response.reason_phrase or ""
        raise PredictionError(
            f"API {api!r} answered {status}{' ' + reason if reason else ''}{detail}", error=error, **context
        )

    def transport_error(self, exc: httpx.TransportError, call: Call[Any]) -> WorkbenchError:
        api, url = call.context.get("api", ""), self.base_url
        context: dict[str, Any] = {"api": api, "url": url}
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailed(
                f"cannot reach the router at {url} ({str(exc) or type(exc).__name__}); "
                f"is `workbench serve` running on {url}? (set {URL_ENV} if it runs elsewhere)",
                **context,
            )
        if isinstance(exc, httpx.TimeoutException):
            seconds = _seconds(self.timeout if call.timeout is DEFAULT else call.timeout)
            limit = f" within {seconds:g} s" if seconds is not None else ""
            return Timeout(
                f"no answer from API {api!r}{limit} (client timeout: {type(exc).__name__}); "
                "pass a larger timeout= to predict() or the client",
                source="client", **context,
            )
        return WorkbenchError(
            f"the connection to the router at {url} failed while calling API {api!r}: "
            f"{str(exc) or type(exc).__name__}",
            **context,
        )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _seconds(timeout: Any) -> float | None:
    if isinstance(timeout, int | float):
        return float(timeout)
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return None


def _router_options(url: str | None, api_key: str | None, timeout: float | None) -> dict[str, Any]:
    base = _resolve_url(url)
    key = _resolve_key(api_key)
    return {
        "base_url": base, "token": key, "headers": {"User-Agent": "workbench-client"}, "timeout": timeout,
        # A proxy from HTTP_PROXY must not capture requests to the router on this machine.
        "trust_env": not _is_loopback(base),
    }


# -- the clients ---------------------------------------------------------------------------


class Client(_RouterCore, SyncCore):
    """A synchronous client for the router. Thread-safe; reuse one (it pools connections)."""

    def __init__(
        self, url: str | None = None, *, api_key: str | None = None, timeout: float | None = 360.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = _router_options(url, api_key, timeout)
        self._has_key = options["token"] is not None
        super().__init__(options.pop("base_url"), transport=transport, **options)

    def predict(
        self, api: str, payload: Any = None, *, json: Any = _UNSET, data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None, params: Params = None, timeout: float | None = _UNSET,
    ) -> Any:
        """POST to an API and return its answer: parsed JSON, str for text, bytes otherwise."""
        return _decode(self.predict_response(
            api, payload, json=json, data=data, headers=headers, params=params, timeout=timeout
        ))

    def predict_response(
        self, api: str, payload: Any = None, *, json: Any = _UNSET, data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None, params: Params = None, timeout: float | None = _UNSET,
    ) -> httpx.Response:
        """Like :meth:`predict`, but the whole (successful) `httpx.Response`."""
        return self.run(predict_call(api, payload, json=json, data=data, headers=headers, params=params,
                                     timeout=timeout))


class AsyncClient(_RouterCore, AsyncCore):
    """The asyncio twin of :class:`Client`: same arguments, awaitable methods."""

    def __init__(
        self, url: str | None = None, *, api_key: str | None = None, timeout: float | None = 360.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = _router_options(url, api_key, timeout)
        self._has_key = options["token"] is not None
        super().__init__(options.pop("base_url"), transport=transport, **options)

    async def predict(
        self, api: str, payload: Any = None, *, json: Any = _UNSET, data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None, params: Params = None, timeout: float | None = _UNSET,
    ) -> Any:
        """POST to an API and return its answer: parsed JSON, str for text, bytes otherwise."""
        return _decode(await self.predict_response(
            api, payload, json=json, data=data, headers=headers, params=params, timeout=timeout
        ))

    async def predict_response(
        self, api: str, payload: Any = None, *, json: Any = _UNSET, data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None, params: Params = None, timeout: float | None = _UNSET,
    ) -> httpx.Response:
        """Like :meth:`predict`, but the whole (successful) `httpx.Response`."""
        return await self.run(predict_call(api, payload, json=json, data=data, headers=headers, params=params,
                                           timeout=timeout))

"""Turning what ``predict`` returns, or raises, into an HTTP response."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

from fastapi.encoders import jsonable_encoder
from starlette.exceptions import HTTPException
from starlette.responses import Response

from workbench.wire.errors import error_body

JSON = "application/json"
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def to_response(result: Any) -> Response:
    """dict/list/number/bool/None → JSON; str → text/plain; bytes → octet-stream;
    a starlette Response is returned as is. Other objects are encoded as JSON when
    FastAPI's ``jsonable_encoder`` can (pydantic models, dataclasses, datetimes …)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result, media_type="text/plain; charset=utf-8")
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), media_type="application/octet-stream")
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        raise TypeError("predict returned a generator, which streams only without dynamic batching "
                        "(serving.max_batch_size: 1)")
    return Response(json_bytes(result, "predict returned"), media_type=JSON)


def json_bytes(value: Any, what: str = "predict yielded") -> bytes:
    """`value` as JSON (through FastAPI's ``jsonable_encoder`` when plain json cannot)."""
    try:
        return _dumps(value).encode()
    except TypeError:
        try:
            return _dumps(jsonable_encoder(value)).encode()
        except Exception as exc:
            raise TypeError(f"{what} a {type(value).__name__}, which is not JSON serializable") from exc


def json_response(status: int, content: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(content), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The wire's error answer (``{"error": message}``) with `status`."""
    return Response(error_body(message), status_code=status, media_type=JSON, headers=headers)


def http_exception_response(exc: HTTPException) -> Response:
    """What FastAPI answers for an HTTPException: its status, ``{"detail": ...}``."""
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return json_response(exc.status_code, {"detail": exc.detail}, exc.headers)

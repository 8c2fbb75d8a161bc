"""FastAPI error handlers that answer every error in the wire's one shape, ``{"error": "..."}``.

The agent and the control API install them; a WorkbenchError answers with its kind's status,
FastAPI's own errors (bad JSON, a missing field, an unknown path) keep theirs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from workbench.wire.errors import Unavailable, WorkbenchError, error_body, status_of
from workbench.wire.validation import describe

JSON = "application/json"


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: object) -> Response:
    """The wire's error answer as a Starlette response."""
    return Response(error_body(message, **extra), status_code=status, media_type=JSON, headers=headers)


def validation_text(error: RequestValidationError | ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one line in the user's words: ``replicas must be 0 or more; …``."""
    return prefix + (describe(list(error.errors())) if error.errors() else "invalid request")


def install_error_handlers(app: FastAPI, *, log: logging.Logger, validation_prefix: str = "") -> None:
    """Every error, FastAPI's own included, as the wire's JSON error with the right status."""

    async def family(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, WorkbenchError)
        headers = None
        if isinstance(exc, Unavailable) and exc.retry_after is not None:
            headers = {"Retry-After": f"{exc.retry_after:g}"}
        return error_response(status_of(exc), exc.message, headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, detail, dict(exc.headers or {}))

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, validation_text(exc, validation_prefix))

    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("internal error")
        return error_response(500, f"internal error: {exc}")

    app.add_exception_handler(WorkbenchError, family)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crash)

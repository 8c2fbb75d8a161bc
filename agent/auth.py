"""Bearer-token auth for every endpoint but /healthz."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import Request
from starlette.exceptions import HTTPException


def bearer_auth(token: str) -> Callable[[Request], None]:
    """A FastAPI dependency that accepts only `Authorization: Bearer <token>`."""
    expected = token.encode()

    def check(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return check

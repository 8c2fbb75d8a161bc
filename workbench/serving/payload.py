"""Turning a request body into the ``payload`` given to ``predict``.

By Content-Type: JSON (``application/json``, ``*/*+json``) → the parsed object;
``text/plain`` → ``str`` (decoded with its charset, UTF-8 by default); form data
(urlencoded or multipart) → starlette ``FormData``; anything else or none → ``bytes``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from workbench.wire.errors import BadRequest
from workbench.wire.sizes import size_text

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class PayloadError(BadRequest):
    """A body that cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; :class:`PayloadError` 413 once it is known to exceed `limit` bytes.

    A declared Content-Length is checked before reading; a chunked body while reading.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise PayloadError(400, "invalid Content-Length header") from None
        if size > limit:
            raise PayloadError(413, _too_large(limit))
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        if chunk:
            total += len(chunk)
            if total > limit:
                raise PayloadError(413, _too_large(limit))
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"request body larger than {size_text(limit)}: the API's serving.max_body_bytes in workbench.yaml"


def split_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``("type/subtype", {param: value})``, the media type lower-cased."""
    if not value:
        return "", {}
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    if rest:
        for item in rest.split(";"):
            key, sep, val = item.partition("=")
            if sep:
                params[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), params


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.endswith("+json") and "/" in media_type)


async def parse_payload(request: Request, body: bytes, max_part_size: int) -> Any:
    """The payload for `body`, according to the request's Content-Type."""
    media_type, params = split_content_type(request.headers.get("content-type"))
    if is_json(media_type):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(400, f"invalid JSON body: {exc}") from None
    if media_type == "text/plain":
        charset = params.get("charset", "utf-8")
        try:
            return body.decode(charset)
        except LookupError:
            raise PayloadError(400, f"unknown charset {charset!r}") from None
        except UnicodeDecodeError as exc:
            raise PayloadError(400, f"body is not valid {charset}: {exc}") from None
    if media_type in FORM_TYPES:
        return await parse_form(request, body, max_part_size)
    return body


async def parse_form(request: Request, body: bytes, max_part_size: int) -> FormData:
    """Form data parsed by starlette (python-multipart) from an already read body."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        return await replay.form(max_part_size=max_part_size)
    except HTTPException as exc:
        raise PayloadError(400, f"invalid form data: {exc.detail}") from None
    except Exception as exc:
        raise PayloadError(400, f"invalid form data: {exc}") from None

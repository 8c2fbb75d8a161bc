"""workbench.serving.responses: what predict returns, as HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

RETURNS = """
import json
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import PlainTextResponse

class Item(BaseModel):
    name: str

class Predictor:
    def predict(self, payload):
        kind = payload["kind"]
        return {
            "dict": {"a": 1},
            "list": [1, "x"],
            "int": 3,
            "float": 1.5,
            "bool": True,
            "none": None,
            "str": "héllo",
            "bytes": b"\\x00\\x01",
            "response": PlainTextResponse("custom", status_code=201, headers={"x-custom": "1"}),
            "fastapi": JSONResponse({"fast": True}, status_code=202),
            "model": Item(name="n"),
            "object": object(),
            "nan": float("nan"),
        }[kind]
"""

CASES = [
    ("dict", 200, "application/json", b'{"a":1}'),
    ("list", 200, "application/json", b'[1,"x"]'),
    ("int", 200, "application/json", b"3"),
    ("float", 200, "application/json", b"1.5"),
    ("bool", 200, "application/json", b"true"),
    ("none", 200, "application/json", b"null"),
    ("str", 200, "text/plain; charset=utf-8", "héllo".encode()),
    ("bytes", 200, "application/octet-stream", b"\x00\x01"),
    ("response", 201, "text/plain; charset=utf-8", b"custom"),
    ("fastapi", 202, "application/json", b'{"fast":true}'),
    ("model", 200, "application/json", b'{"name":"n"}'),
]


@pytest.mark.parametrize(("kind", "status", "content_type", "body"), CASES)
async def test_return_types(
    app_client: Callable[..., Any], kind: str, status: int, content_type: str, body: bytes
) -> None:
    client = await app_client(RETURNS)
    response = await client.post("/", json={"kind": kind})
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    assert response.content == body


async def test_custom_response_headers_kept(app_client: Callable[..., Any]) -> None:
    client = await app_client(RETURNS)
    assert (await client.post("/", json={"kind": "response"})).headers["x-custom"] == "1"


@pytest.mark.parametrize("kind", ["object", "nan"])
async def test_unserializable_is_500(app_client: Callable[..., Any], kind: str) -> None:
    client = await app_client(RETURNS)
    response = await client.post("/", json={"kind": kind})
    assert response.status_code == 500
    assert response.json()["error"].startswith(("TypeError", "ValueError"))
    assert (await client.post("/", json={"kind": "int"})).status_code == 200

"""The error family: each kind maps to its HTTP status and back, through a real FastAPI app."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from workbench.wire import errors
from workbench.wire.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Failed,
    NotFound,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    UpstreamFailed,
    WorkbenchError,
    error_body,
    error_from_response,
    error_text,
    kind_for_status,
    parse_retry_after,
    status_of,
)
from workbench.wire.handlers import install_error_handlers

KINDS = [BadRequest, Unauthorized, NotFound, Conflict, TooLarge, Failed, UpstreamFailed, Unavailable, Timeout]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_maps_to_its_status_and_back(kind: type[WorkbenchError]) -> None:
    status = kind.default_status
    assert status is not None
    assert kind_for_status(status) is kind
    error = error_from_response(status, error_body(f"{kind.__name__} happened"))
    assert type(error) is kind and error.status == status
    assert str(error) == error.message == error.error == f"{kind.__name__} happened"


def test_every_kind_is_a_workbench_error_and_no_name_is_reused() -> None:
    names = [name for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert all(issubclass(getattr(errors, name), WorkbenchError) for name in names)
    assert ConnectionFailed.default_status is None
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("status", "kind"), [(403, Unauthorized), (405, BadRequest), (418, BadRequest),
                                              (422, BadRequest), (500, Failed), (501, Failed), (599, Failed)])
def test_statuses_outside_the_table(status: int, kind: type[WorkbenchError]) -> None:
    assert kind_for_status(status) is kind
    assert error_from_response(status, b"").message == f"HTTP {status}"


def test_error_body_is_the_one_json_shape() -> None:
    body = json.loads(error_body("no API named 'x'", apis=["a", "b"]))
    assert body == {"error": "no API named 'x'", "apis": ["a", "b"]}
    assert json.loads(error_body("ünïcode ✓")) == {"error": "ünïcode ✓"}
    read = error_from_response(404, error_body("gone", apis=["a"]))
    assert read.body == {"error": "gone", "apis": ["a"]}


def test_error_text_reads_every_server_shape() -> None:
    assert error_text(b'{"error": "ours"}') == "ours"
    assert error_text(b'{"detail": "fastapi\'s"}') == "fastapi's"
    assert error_text(b'{"detail": [{"loc": ["x"]}]}') == '[{"loc": ["x"]}]'
    assert error_text(b'{"message": "others\'"}') == "others'"
    assert error_text(b'["a list"]') == '["a list"]'
    assert error_text(b"plain text\n") == "plain text"
    long = error_text(b"x" * 5000)
    assert long.endswith("…") and len(long) == errors.ERROR_TEXT_LIMIT + 1
    assert error_text(b"", "Not Found") == "Not Found"
    assert error_text(b"\xff\xfe", "") == "\ufffd\ufffd"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 < (parse_retry_after(later) or 0) <= 60
    error = error_from_response(503, error_body("busy"), {"retry-after": "2"})
    assert isinstance(error, Unavailable) and error.retry_after == 2.0


def test_status_of_anything() -> None:
    assert status_of(NotFound("x")) == 404
    assert status_of(BadRequest("x", status=422)) == 422
    assert status_of(ValueError("x")) == 500
    assert status_of(ConnectionFailed("x")) == 500


class Body(BaseModel):
    count: int


@pytest.fixture
def app() -> TestClient:
    api = FastAPI()
    import logging

    install_error_handlers(api, log=logging.getLogger("test"), validation_prefix="invalid request: ")

    @api.get("/raise/{status}")
    async def raise_kind(status: int) -> None:
        kind = kind_for_status(status)
        if kind is Unavailable:
            raise Unavailable("try later", retry_after=3)
        raise kind(f"kind {kind.__name__}")

    @api.get("/crash")
    async def crash() -> None:
        raise ZeroDivisionError("boom")

    @api.post("/body")
    async def body(item: Body) -> dict[str, int]:
        return {"count": item.count}

    return TestClient(api, raise_server_exceptions=False)


@pytest.mark.parametrize("kind", [k for k in KINDS if k is not Unavailable])
def test_a_raised_kind_is_answered_with_its_status_and_read_back(app: TestClient,
                                                                 kind: type[WorkbenchError]) -> None:
    response = app.get(f"/raise/{kind.default_status}")
    assert response.status_code == kind.default_status
    assert response.json() == {"error": f"kind {kind.__name__}"}
    back = error_from_response(response.status_code, response.content, response.headers)
    assert type(back) is kind and back.message == f"kind {kind.__name__}"


def test_unavailable_carries_retry_after_both_ways(app: TestClient) -> None:
    response = app.get("/raise/503")
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    back = error_from_response(503, response.content, response.headers)
    assert isinstance(back, Unavailable) and back.retry_after == 3.0


def test_framework_errors_take_the_same_shape(app: TestClient) -> None:
    crash = app.get("/crash")
    assert crash.status_code == 500 and crash.json() == {"error": "internal error: boom"}
    missing = app.get("/no-such-route")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    invalid = app.post("/body", json={"count": "many"})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid request: count must be a whole number, not 'many'"
    assert isinstance(error_from_response(422, invalid.content), BadRequest)

"""The wire's FastAPI error handlers over real HTTP: every error, FastAPI's own included, answers
``{"error": ...}`` with its kind's status, and the client core reads each back as the same kind."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from tests.support.served import Served
from workbench.wire import errors
from workbench.wire.handlers import install_error_handlers, validation_text


class Body(BaseModel):
    replicas: int


def make_app(log: logging.Logger) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, log=log, validation_prefix="bad request: ")

    @app.get("/kind/{name}")
    def kind(name: str) -> None:
        raise {
            "bad": errors.BadRequest("no such flag"),
            "missing": errors.NotFound("no API named x"),
            "busy": errors.Unavailable("queue full", retry_after=7),
            "slow": errors.Timeout("took too long"),
        }[name]

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"X-Why": "tea"})

    @app.post("/scale")
    def scale(body: Body) -> dict[str, int]:
        return {"replicas": body.replicas}

    @app.get("/crash")
    def crash() -> None:
        raise ZeroDivisionError("division by zero")

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, list[logging.LogRecord]]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("tests.wire.handlers")
    log.addHandler(Keep())
    with Served(make_app(log)) as server:
        yield server.url, records


@pytest.mark.parametrize(("name", "status", "kind", "message"), [
    ("bad", 400, errors.BadRequest, "no such flag"),
    ("missing", 404, errors.NotFound, "no API named x"),
    ("busy", 503, errors.Unavailable, "queue full"),
    ("slow", 504, errors.Timeout, "took too long"),
])
def test_a_family_error_answers_with_its_kind(served: tuple[str, list[logging.LogRecord]], name: str,
                                              status: int, kind: type[errors.WorkbenchError],
                                              message: str) -> None:
    response = httpx.get(f"{served[0]}/kind/{name}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}
    error = errors.error_from_response(response.status_code, response.content, response.headers)
    assert type(error) is kind and error.message == message


def test_unavailable_carries_retry_after(served: tuple[str, list[logging.LogRecord]]) -> None:
    response = httpx.get(f"{served[0]}/kind/busy")
    assert response.headers["retry-after"] == "7"
    error = errors.error_from_response(response.status_code, response.content, response.headers)
    assert isinstance(error, errors.Unavailable) and error.retry_after == 7


def test_starlette_http_errors_keep_status_and_headers(served: tuple[str, list[logging.LogRecord]]) -> None:
    teapot = httpx.get(f"{served[0]}/teapot")
    assert (teapot.status_code, teapot.json()) == (418, {"error": "short and stout"})
    assert teapot.headers["x-why"] == "tea"
    unknown = httpx.get(f"{served[0]}/nowhere")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Not Found"})
    wrong_method = httpx.delete(f"{served[0]}/scale")
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}


def test_validation_errors_are_one_line_with_the_field(served: tuple[str, list[logging.LogRecord]]) -> None:
    response = httpx.post(f"{served[0]}/scale", json={"replicas": "abc"})
    assert response.status_code == 422
    text = response.json()["error"]
    assert text == "bad request: replicas must be a whole number, not 'abc'"  # in the user's words
    not_json = httpx.post(f"{served[0]}/scale", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"].startswith("bad request: ")


def test_a_crash_is_a_500_and_is_logged(served: tuple[str, list[logging.LogRecord]]) -> None:
    url, records = served
    response = httpx.get(f"{url}/crash")
    assert (response.status_code, response.json()) == (500, {"error": "internal error: division by zero"})
    crashed = [r for r in records if r.getMessage() == "internal error"]
    assert crashed and crashed[-1].exc_info is not None and crashed[-1].exc_info[0] is ZeroDivisionError


def test_validation_text_of_a_model_error() -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({})
    assert validation_text(caught.value, "spec: ") == "spec: replicas is required"

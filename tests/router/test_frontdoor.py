"""The router's OpenAI front door (/openai/v1), with the real `openai` package as the client, against
examples/tinylm (an OpenAI-style server, as a process and as a container) behind a real router:
routing by the body's `model` (to an API, to a traffic splitter), streaming and not, and the bad
input answered in OpenAI's error shape."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import openai
import pytest

from tests.examples.test_tinylm_server import Served, served  # noqa: F401  (the fixture)
from tests.router.conftest import RouterServer
from workbench.router import ApiRoute, Endpoint
from workbench.router.frontdoor import ModelTable
from workbench.router.types import SplitRoute
from workbench.spec.models import RoutingSpec

CHAT = [{"role": "user", "content": "Who are you?"}]


def endpoint(served: Served, replica: str) -> Endpoint:  # noqa: F811
    return Endpoint(replica_id=replica, url=served.url)


@pytest.fixture
def door(router_server: Any, served: Served) -> tuple[RouterServer, openai.OpenAI]:  # noqa: F811
    """A router with API `lm` serving the tinylm model (one replica, `lm-0`) and API `other`
    claiming `other-model` (its replica is the same server, which knows no such model)."""
    srv = router_server()
    srv.call(srv.router.set_route, ApiRoute(name="lm", models=(served.model,), max_body_bytes=4096,
                                            incarnation=1700000000.5))
    srv.call(srv.router.set_endpoints, "lm", [endpoint(served, "lm-0")])
    srv.call(srv.router.set_route, ApiRoute(name="other", models=("other-model",)))
    srv.call(srv.router.set_endpoints, "other", [endpoint(served, "other-0")])
    client = openai.OpenAI(base_url=f"{srv.url}/openai/v1", api_key="unused", max_retries=0, timeout=30)
    return srv, client


def openai_error(response: httpx.Response, status: int, *, param: str | None = None,
                 code: str | None = None) -> str:
    """OpenAI's error body, checked; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"], body
    assert (body["error"]["param"], body["error"]["code"]) == (param, code), body
    return str(body["error"]["message"])


def test_models_lists_every_model_in_openai_format(door: Any, served: Served) -> None:  # noqa: F811
    srv, client = door
    models = client.models.list()
    assert [(m.id, m.owned_by) for m in models.data] == sorted([(served.model, "lm"),
                                                                ("other-model", "other")])
    assert next(m for m in models.data if m.id == served.model).created == 1700000000
    assert client.models.retrieve(served.model).owned_by == "lm"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    srv.call(srv.router.remove_route, "other")
    assert [m.id for m in client.models.list().data] == [served.model]


def test_chat_routed_by_model_streaming_and_not(door: Any, served: Served) -> None:  # noqa: F811
    _, client = door
    raw = client.chat.completions.with_raw_response.create(model=served.model, messages=CHAT,
                                                           max_tokens=8, seed=1)
    assert raw.headers["x-workbench-replica"] == "lm-0"
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.choices[0].message.content

    stream = client.chat.completions.create(model=served.model, messages=CHAT, max_tokens=12, stream=True)
    content = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(content) == 12

    completions = client.completions.create(model=served.model, prompt="Alice was", max_tokens=6,
                                            stream=True)
    assert len([c for c in completions if c.choices and c.choices[0].text]) == 6

    # `other-model` goes to API other (whose replica, knowing no such model, answers 400 itself)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="other-model", messages=CHAT, max_tokens=2)
    assert caught.value.response.headers["x-workbench-replica"] == "other-0"


def test_an_unknown_model_is_404_model_not_found_listing_the_known(door: Any,
                                                                  served: Served) -> None:  # noqa: F811
    _, client = door
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=CHAT)
    assert caught.value.code == "model_not_found"
    message = openai_error(caught.value.response, 404, param="model", code="model_not_found")
    assert "'gpt-9'" in message and served.model in message and "other-model" in message


def test_no_model_or_not_json_is_400_in_openai_shape(door: Any) -> None:
    srv, _ = door
    url = f"{srv.url}/openai/v1/chat/completions"
    message = openai_error(httpx.post(url, json={"messages": CHAT}), 400, param="model")
    assert "model" in message
    assert "JSON" in openai_error(httpx.post(url, content=b"{not json"), 400)
    assert "object" in openai_error(httpx.post(url, json=["model"]), 400)
    assert "object" not in openai_error(httpx.post(url, json={"model": 3}), 400, param="model")
    unknown = httpx.post(f"{srv.url}/openai/v2/chat", json={"model": "x"})
    assert "Invalid URL" in openai_error(unknown, 404, code="unknown_url")


def test_a_body_over_the_api_limit_is_413(door: Any, served: Served) -> None:  # noqa: F811
    srv, client = door
    big = [{"role": "user", "content": "x" * 5000}]  # over lm's 4096 bytes, within the largest limit
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=served.model, messages=big, max_tokens=1)
    assert "4096" in openai_error(caught.value.response, 413, code="request_too_large")
    over_all = httpx.post(f"{srv.url}/openai/v1/chat/completions", content=b"x" * (11 * 1024 * 1024),
                          headers={"content-type": "application/json"}, timeout=30)
    openai_error(over_all, 413, code="request_too_large")


def test_api_keys_apply_on_the_front_door(router_server: Any, served: Served) -> None:  # noqa: F811
    srv = router_server()
    srv.call(srv.router.set_route, ApiRoute(name="lm", models=(served.model,), api_keys=frozenset({"k1"})))
    srv.call(srv.router.set_endpoints, "lm", [endpoint(served, "lm-0")])
    base = f"{srv.url}/openai/v1"
    good = openai.OpenAI(base_url=base, api_key="k1", max_retries=0, timeout=30)
    bad = openai.OpenAI(base_url=base, api_key="k2", max_retries=0, timeout=30)
    assert good.chat.completions.create(model=served.model, messages=CHAT, max_tokens=2).choices
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model=served.model, messages=CHAT, max_tokens=2)
    assert caught.value.code == "invalid_api_key" and "'lm'" not in str(caught.value.code)
    assert [m.id for m in good.models.list().data] == [served.model]
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_a_traffic_splitter_stands_behind_a_model_name(router_server: Any,
                                                       served: Served) -> None:  # noqa: F811
    """A canary: the model name routes to a splitter, which sends 70/30 to two versions."""
    srv = router_server()
    for name in ("lm-v1", "lm-v2"):
        srv.call(srv.router.set_route, ApiRoute(name=name, routing=RoutingSpec()))
        srv.call(srv.router.set_endpoints, name, [endpoint(served, f"{name}-0")])
    srv.call(srv.router.set_route, SplitRoute(name="lm", targets=(("lm-v1", 70.0), ("lm-v2", 30.0)),
                                              models=(served.model,)))
    client = openai.OpenAI(base_url=f"{srv.url}/openai/v1", api_key="unused", max_retries=0, timeout=30)
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(40):
        raw = client.completions.with_raw_response.create(model=served.model, prompt="A", max_tokens=1)
        seen[raw.headers["x-workbench-replica"]] += 1
    assert set(seen) == {"lm-v1-0", "lm-v2-0"} and seen["lm-v1-0"] > seen["lm-v2-0"], seen


def test_model_table_first_claim_keeps_a_name() -> None:
    table = ModelTable()
    table.claim("a", ("m", "n"))
    table.claim("b", ("m",))
    assert table.owner("m") == "a" and table.owner("n") == "a"
    table.claim("a", ("n",))  # a no longer claims m: b's claim takes it over
    assert table.owner("m") == "b"
    table.release("b")
    assert table.owner("m") is None and table.models() == [("n", "a")]

"""Reading a request (workbench/router/request.py) from raw ASGI scopes: the API name, the one
pass over the headers, the API-key check, the upstream target and a splitter's choice."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.router.scripted import Sent, body_receive
from workbench.router import Router
from workbench.router.api import ApiState
from workbench.router.metrics import ApiStats, RouterMetrics
from workbench.router.request import (
    IncomingRequest,
    MalformedRequest,
    api_name,
    check_key,
    pick_target,
    read_request,
    split_target,
    upstream_target,
)
from workbench.router.types import ApiRoute, SplitRoute
from workbench.wire.errors import BadRequest, Unauthorized, Unavailable

NO_KEYS: frozenset[str] = frozenset()


def scope(path: str = "/echo", headers: list[tuple[bytes, bytes]] | None = None, *, method: str = "POST",
          query: bytes = b"", raw_path: bytes | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "http", "method": method, "path": path, "query_string": query,
                           "headers": headers or []}
    if raw_path is not None:
        out["raw_path"] = raw_path
    return out


def read(headers: list[tuple[bytes, bytes]], keys: frozenset[str] = NO_KEYS, require: bool = False,
         **kw: Any) -> IncomingRequest:
    return read_request(scope(headers=headers, **kw), "echo", keys, require)


def test_api_name_is_the_first_path_segment():
    assert api_name("/echo") == "echo"
    assert api_name("/echo/") == "echo"
    assert api_name("/echo/v1/chat") == "echo"
    assert api_name("/") == ""


def test_hop_by_hop_host_and_own_headers_are_not_forwarded():
    request = read([
        (b"host", b"router:8765"),
        (b"connection", b"keep-alive, X-Private"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-authorization", b"Basic abc"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"x-private", b"secret"),  # named by Connection: for this hop only
        (b"content-type", b"application/json"),
        (b"x-request-id", b"mine-1"),
        (b"content-length", b"2"),
        (b"accept", b"*/*"),
    ])
    assert request.headers == [("content-type", "application/json"), ("accept", "*/*")]
    assert request.request_id == b"mine-1"
    assert request.content_length == 2 and request.has_body
    assert request.method == "POST" and request.body is None


def test_headers_are_decoded_as_latin_1():
    request = read([(b"x-name", "café".encode("latin-1"))])
    assert request.headers == [("x-name", "café")]


def test_request_id_kept_when_sane_else_made():
    assert read([(b"x-request-id", b"a" * 200)]).request_id == b"a" * 200
    for given in (None, b"", b"a" * 201):
        request = read([] if given is None else [(b"x-request-id", given)])
        assert len(request.request_id) == 32 and request.request_id != given
        int(request.request_id, 16)  # a uuid4 in hex
    assert read([]).request_id != read([]).request_id


def test_body_is_declared_by_length_or_chunking():
    assert not read([]).has_body
    assert read([]).content_length is None
    zero = read([(b"content-length", b"0")])
    assert zero.content_length == 0 and not zero.has_body
    chunked = read([(b"transfer-encoding", b"chunked")])
    assert chunked.has_body and chunked.content_length is None
    assert not any(k == "transfer-encoding" for k, _ in chunked.headers)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1.5", b"", b"9" * 19])
def test_invalid_content_length_is_a_bad_request_with_the_request_id(length):
    with pytest.raises(MalformedRequest) as caught:
        read([(b"x-request-id", b"rid-7"), (b"content-length", length)])
    assert isinstance(caught.value, BadRequest) and caught.value.status == 400
    assert str(caught.value) == "invalid Content-Length"
    assert caught.value.given_request_id == b"rid-7"


def test_no_keys_needed_forwards_authorization():
    request = read([(b"authorization", b"Bearer theirs"), (b"x-api-key", b"k")])
    assert request.headers == [("authorization", "Bearer theirs"), ("x-api-key", "k")]


def test_api_keys_checked_and_not_forwarded():
    keys = frozenset({"s3cret", "other"})
    for headers in ([(b"authorization", b"Bearer s3cret")], [(b"x-api-key", b" other ")],
                    [(b"authorization", b"bearer s3cret"), (b"accept", b"*/*")]):
        request = read(headers, keys)
        assert all(k not in ("authorization", "x-api-key") for k, _ in request.headers)
    request = read([(b"authorization", b"Bearer s3cret"), (b"accept", b"*/*")], keys)
    assert request.headers == [("accept", "*/*")]
    cases = {
        "an API key is required": [],
        "an API key is required: send": [(b"authorization", b"Basic s3cret")],
        "invalid API key": [(b"authorization", b"Bearer wrong")],
    }
    for message, headers in cases.items():
        with pytest.raises(Unauthorized) as caught:
            read(headers, keys)
        assert str(caught.value).startswith(message) and caught.value.status == 401


def test_required_keys_refuse_a_route_without_any():
    with pytest.raises(Unauthorized, match="configure keys"):
        read([(b"x-api-key", b"anything")], require=True)


def test_key_is_checked_before_the_content_length():
    with pytest.raises(Unauthorized):
        read([(b"content-length", b"abc")], frozenset({"k"}))


def test_check_key_prefers_x_api_key():
    keys = frozenset({"k"})
    assert check_key(keys, b"Bearer wrong", b"k", "echo") is None
    assert check_key(keys, b"Bearer k", b"wrong", "echo") == "invalid API key"


@pytest.mark.parametrize(("path", "raw", "query", "target"), [
    ("/echo", None, b"", "/"),
    ("/echo/", None, b"", "/"),
    ("/echo/v1/x", None, b"a=1&b=2", "/v1/x?a=1&b=2"),
    ("/echo/a b", b"/echo/a%20b", b"", "/a%20b"),  # as the client sent it, still encoded
    ("/echo/x", b"/%65cho/x", b"", "/x"),  # the name itself encoded: the decoded path is used
    ("/echo", b"/echo", b"q", "/?q"),
])
def test_upstream_target(path, raw, query, target):
    assert upstream_target(scope(path, raw_path=raw, query=query), "echo") == target
    request = read_request(scope(path, raw_path=raw, query=query), "echo", NO_KEYS, False)
    assert request.target == target


def apis_with(*names: str, deployed: bool = True) -> dict[str, ApiState]:
    metrics = RouterMetrics(CollectorRegistry())
    apis = {}
    for name in names:
        api = ApiState(name, ApiStats(metrics, name))
        if deployed:
            api.configure(ApiRoute(name=name))
        apis[name] = api
    return apis


def test_split_by_weight():
    route = SplitRoute(name="split", targets=(("a", 80.0), ("b", 20.0), ("c", 0.0)))
    apis = apis_with("a", "b", "c")
    picks = collections.Counter(split_target(route, apis).name for _ in range(5000))
    assert set(picks) == {"a", "b"} and 0.76 <= picks["a"] / 5000 <= 0.84
    assert pick_target(SplitRoute(name="s", targets=(("only", 1.0),))) == "only"


def test_split_without_weight_or_deployed_target_is_unavailable():
    with pytest.raises(Unavailable, match="has no target with weight") as caught:
        split_target(SplitRoute(name="s", targets=(("a", 0.0),)), apis_with("a"))
    assert caught.value.status == 503 and caught.value.retry_after == 1
    with pytest.raises(Unavailable, match="'b' of traffic splitter 's' is not deployed"):
        split_target(SplitRoute(name="s", targets=(("b", 1.0),)), apis_with("a"))
    # endpoints arrived before the route: known, but not deployed yet
    with pytest.raises(Unavailable, match="not deployed"):
        split_target(SplitRoute(name="s", targets=(("a", 1.0),)), apis_with("a", deployed=False))


# -- what the router answers for a request it cannot read ------------------------------------


async def answer(router: Router, headers: list[tuple[bytes, bytes]], path: str = "/echo") -> Sent:
    sent = Sent()
    await router(scope(path, headers), body_receive(), sent)
    return sent


async def test_router_answers_a_malformed_request_400_with_its_request_id():
    router = Router(registry=CollectorRegistry())
    router.set_route(ApiRoute(name="echo"))
    sent = await answer(router, [(b"x-request-id", b"rid-3"), (b"content-length", b"12x")])
    assert sent.status == 400 and sent.json() == {"error": "invalid Content-Length"}
    assert sent.headers[b"x-request-id"] == b"rid-3"
    assert router.traffic("echo").status_4xx == 0  # refused before it was counted


async def test_router_answers_a_missing_key_401_asking_for_one():
    router = Router(registry=CollectorRegistry())
    router.set_route(ApiRoute(name="echo", api_keys=frozenset({"k"})))
    sent = await answer(router, [(b"x-request-id", b"rid-4")])
    assert sent.status == 401 and sent.headers[b"www-authenticate"] == b"Bearer"
    assert b"x-request-id" not in sent.headers
    assert sent.json()["error"].startswith("an API key is required")


async def test_router_answers_an_undeployed_split_target_503():
    router = Router(registry=CollectorRegistry())
    router.set_route(SplitRoute(name="split", targets=(("missing", 1.0),)))
    sent = await answer(router, [(b"x-request-id", b"rid-5")], "/split")
    assert sent.status == 503 and sent.headers[b"retry-after"] == b"1"
    assert sent.headers[b"x-request-id"] == b"rid-5"
    assert sent.json() == {"error": "API 'missing' of traffic splitter 'split' is not deployed"}


def test_a_websocket_scope_reads_as_a_get():
    ws = {"type": "websocket", "path": "/echo/ws", "query_string": b"", "headers": [(b"origin", b"x")]}
    request = read_request(ws, "echo", NO_KEYS, False)
    assert request.method == "GET" and request.target == "/ws" and request.headers == [("origin", "x")]

"""Bad input to every endpoint: a clear 4xx JSON error and nothing changed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agent.helpers import Agent, make_tar, replica_request


def snapshot(agent: Agent, client: httpx.Client) -> tuple[object, ...]:
    home = agent.home
    return (
        client.get("/v1/replicas").json(),
        sorted(p.name for p in home.rglob("*") if "bundles" not in p.parts),
    )


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 422, "json"),
        (b"[]", 422, "invalid request"),
        (b'{"api": "x"}', 422, "runtime"),
        (None, 422, "runtime"),
    ],
)
def test_bad_replica_bodies(
    agent: Agent, client: httpx.Client, body: bytes | None, status: int, needle: str
) -> None:
    before = snapshot(agent, client)
    if body is None:
        body = httpx.Request(
            "POST", "/", json={**replica_request("process", "x"), "runtime": "kubernetes"}
        ).content
    resp = client.post("/v1/replicas", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status
    assert needle in resp.json()["error"].lower()
    assert snapshot(agent, client) == before


def test_unknown_artifact_says_build_first(agent: Agent, client: httpx.Client) -> None:
    before = snapshot(agent, client)
    resp = client.post("/v1/replicas", json=replica_request("process", "no-such-bundle"))
    assert resp.status_code == 404
    assert "build it first" in resp.json()["error"]
    assert snapshot(agent, client) == before


def test_unknown_replica_id(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/replicas/nope"),
        ("DELETE", "/v1/replicas/nope"),
        ("GET", "/v1/replicas/nope/logs"),
    ]:
        resp = client.request(method, path)
        assert resp.status_code == 404, path
        assert "nope" in resp.json()["error"]


def test_bad_build_uploads(agent: Agent, client: httpx.Client) -> None:
    before = snapshot(agent, client)
    cases = [
        ({"runtime": "process", "artifact": "a"}, b"this is not a tar", 400, "tar"),
        ({"runtime": "process", "artifact": "a"}, b"", 400, "tar"),
        ({"runtime": "vm", "artifact": "a"}, make_tar({"x": b"1"}), 400, "unknown runtime"),
        ({"runtime": "process", "artifact": "../escape"}, make_tar({"x": b"1"}), 400, "invalid"),
        ({"runtime": "process"}, make_tar({"x": b"1"}), 422, "artifact"),
        (
            {"runtime": "process", "artifact": "b"},
            make_tar({"workbench-build.json": b"{oops"}),
            400,
            "not valid json",
        ),
    ]
    for params, body, status, needle in cases:
        resp = client.post("/v1/builds", params=params, content=body)
        assert resp.status_code == status, (params, resp.text)
        assert needle in resp.text.lower(), (params, resp.text)
    assert snapshot(agent, client) == before
    assert not [p for p in (agent.home / "bundles").iterdir() if p.name in ("a", "b")]


def test_unsafe_tar_member_rejected(agent: Agent, client: httpx.Client) -> None:
    resp = client.post(
        "/v1/builds",
        params={"runtime": "process", "artifact": "evil"},
        content=make_tar({"../outside.txt": b"x"}),
    )
    assert resp.status_code == 400 and "unsafe" in resp.json()["error"]
    assert not (agent.home / "outside.txt").exists()
    assert not Path(agent.home.parent / "outside.txt").exists()


def test_artifacts_endpoint(client: httpx.Client) -> None:
    resp = client.get("/v1/artifacts", params={"runtime": "process", "name": "missing"})
    assert resp.status_code == 404 and resp.json()["exists"] is False
    assert client.get("/v1/artifacts", params={"runtime": "x", "name": "y"}).status_code == 400
    assert client.get("/v1/artifacts", params={"runtime": "process"}).status_code == 422


def test_unknown_path_is_json_404(client: httpx.Client) -> None:
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404 and "error" in resp.json()

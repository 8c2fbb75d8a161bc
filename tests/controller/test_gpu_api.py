"""GET /v1/hosts/{name}/gpus on the control API, against a real agent on the GPU fixture."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.agent.helpers import Agent
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.gpu_api import gpu_routes


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    path = tmp_path_factory.mktemp("gpus") / "gpus.json"
    path.write_text(json.dumps({"driver_version": "550", "gpus": [{"index": 0, "name": "Tesla T4"}]}))
    a = Agent(tmp_path_factory.mktemp("agent") / "home", env={**os.environ, "WORKBENCH_FAKE_GPUS": str(path)})
    try:
        yield a.start()
    finally:
        a.cleanup()


def close(client: AsyncAgentClient) -> None:
    with contextlib.suppress(RuntimeError):  # its connections belong to the TestClient's closed loop
        asyncio.run(client.aclose())


def test_host_gpus(agent: Agent, tmp_path: Path) -> None:
    good = AsyncAgentClient(agent.url, agent.config["token"])
    bad = AsyncAgentClient(agent.url, "wrong")
    gone = AsyncAgentClient("http://127.0.0.1:9", "t", timeout=2)
    clients = {"box1": good, "badtoken": bad, "gone": gone}
    app = FastAPI()
    app.include_router(gpu_routes(clients.get))
    try:
        with TestClient(app) as http:
            report = http.get("/v1/hosts/box1/gpus").json()
            assert report["source"] == "fixture" and report["gpus"][0]["name"] == "Tesla T4"
            assert report["driver_version"] == "550" and "0" in report["history"]
            assert http.get("/v1/hosts/box1/gpus", params={"history": "false"}).json()["history"] == {}
            later = http.get("/v1/hosts/box1/gpus", params={"since": 4e9}).json()["history"]  # the future
            assert later and all(samples == [] for samples in later.values())
            assert http.get("/v1/hosts/nope/gpus").status_code == 404
            assert http.get("/v1/hosts/badtoken/gpus").status_code == 401
            r = http.get("/v1/hosts/gone/gpus")
            assert r.status_code == 502 and "gone: cannot read GPUs" in r.json()["detail"]
    finally:
        for c in clients.values():
            close(c)


def test_fleet_gpus_in_one_answer(agent: Agent) -> None:
    good = AsyncAgentClient(agent.url, agent.config["token"])
    gone = AsyncAgentClient("http://127.0.0.1:9", "t", timeout=2)
    clients = {"box1": good, "box2": good, "gone": gone}
    app = FastAPI()
    app.include_router(gpu_routes(clients.get, lambda: ["box2", "box1", "gone", "left-already"]))
    try:
        with TestClient(app) as http:
            body = http.get("/v1/gpus").json()
            assert list(body["reports"]) == ["box1", "box2"]  # sorted; the host that left is skipped
            assert body["reports"]["box1"]["gpus"][0]["name"] == "Tesla T4"
            assert len(body["reports"]["box1"]["history"]["0"]) >= 1
            assert "gone: cannot read GPUs" in body["errors"]["gone"]
            cut = http.get("/v1/gpus", params=[("since", "box1:4e9"), ("since", "box2:0")]).json()
            assert cut["reports"]["box1"]["history"]["0"] == []  # nothing after a time in the future
            assert len(cut["reports"]["box2"]["history"]["0"]) >= 1
            bad = http.get("/v1/gpus", params={"since": "box1"})
            assert bad.status_code == 422 and "expected HOST:UNIXTIME" in bad.json()["detail"]
            assert http.get("/v1/gpus", params={"since": "box1:soon"}).status_code == 422
    finally:
        close(good)
        close(gone)

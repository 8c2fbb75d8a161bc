"""Bearer-token auth, loopback-only binding, and the token staying out of logs."""

from __future__ import annotations

import httpx
import psutil

from tests.agent.helpers import Agent


def test_healthz_needs_no_token_and_shows_no_secret(agent: Agent) -> None:
    resp = httpx.get(agent.url + "/healthz")
    assert resp.status_code == 200
    assert resp.json()["ok"] is True
    assert agent.config["token"] not in resp.text


def test_endpoints_need_the_token(agent: Agent) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": agent.config["token"]},
    ):
        resp = httpx.get(agent.url + "/v1/replicas", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["www-authenticate"] == "Bearer"
        assert "error" in resp.json()
    ok = httpx.get(agent.url + "/v1/replicas", headers={"Authorization": f"Bearer {agent.config['token']}"})
    assert ok.status_code == 200
    assert httpx.post(agent.url + "/v1/replicas", json={}).status_code == 401
    assert httpx.post(agent.url + "/v1/builds?runtime=process&artifact=x").status_code == 401


def test_token_is_not_logged(agent: Agent) -> None:
    with agent.client() as c:
        c.get("/v1/host")
    token = agent.config["token"]
    assert token not in (agent.home / "agent.log").read_text()
    assert token not in agent.output.read_text()


def test_binds_loopback_only(agent: Agent) -> None:
    assert agent.proc is not None
    addrs = {
        c.laddr.ip
        for c in psutil.Process(agent.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert addrs == {"127.0.0.1"}

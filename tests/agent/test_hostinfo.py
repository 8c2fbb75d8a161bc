"""GET /v1/host."""

from __future__ import annotations

import httpx

from workbench.wire.agent import HostInfo


def test_host_info(client: httpx.Client) -> None:
    resp = client.get("/v1/host")
    assert resp.status_code == 200
    info = HostInfo.model_validate(resp.json())
    assert info.cpu_count >= 1 and info.mem_total_bytes > 0 and info.disk_free_bytes > 0
    assert "process" in info.runtimes
    assert info.load_1m is not None and info.load_1m >= 0  # Linux has a load average (metering: CPU busy)
    assert ("docker" in info.runtimes) == info.docker.available
    if info.docker.available:
        assert info.docker.version
    else:
        assert info.docker.error


def test_without_docker_only_process_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from tests.agent.helpers import Agent, make_tar, replica_request

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    a = Agent(tmp_path / "home", env=env).start()
    try:
        with a.client() as c:
            info = c.get("/v1/host").json()
            assert info["docker"]["available"] is False and info["docker"]["error"]
            assert info["runtimes"] == ["process"]
            resp = c.post("/v1/replicas", json=replica_request("docker", "img:1"))
            assert resp.status_code == 503
            assert "docker" in resp.json()["error"] and "runtime: process" in resp.json()["error"]
            build = c.post(
                "/v1/builds",
                params={"runtime": "docker", "artifact": "img:1"},
                content=make_tar({"Dockerfile": b"FROM scratch\n"}),
            )
            assert build.status_code == 503
            assert c.get("/v1/replicas").json() == []
    finally:
        a.cleanup()

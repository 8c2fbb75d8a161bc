"""Process-runtime builds (bundles): venv, requirements, build commands, atomicity, cache."""

from __future__ import annotations

import httpx

from tests.agent.helpers import Agent, bundle_context, read_events


def test_bundle_has_requirements_and_command_output(agent: Agent, bundle: str) -> None:
    root = agent.home / "bundles" / bundle
    assert (root / "project" / "built.txt").read_text() == "ok"
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "six.py").exists()
    assert "addsitedir" in (site / "zz-workbench-agent.pth").read_text()
    assert not list((agent.home / "bundles").glob("*.tmp"))


def test_second_build_is_cached(client: httpx.Client, bundle: str) -> None:
    _, tar = bundle_context()
    events = read_events(
        client.post("/v1/builds", params={"runtime": "process", "artifact": bundle}, content=tar)
    )
    assert [(e["kind"], e["cached"]) for e in events] == [("done", True)]
    assert client.get("/v1/artifacts", params={"runtime": "process", "name": bundle}).json() == {
        "exists": True
    }


def test_failed_build_leaves_nothing(agent: Agent, client: httpx.Client) -> None:
    artifact, tar = bundle_context(
        requirements="", commands=[["python", "-c", "print('about to fail'); raise SystemExit(5)"]]
    )
    resp = client.post("/v1/builds", params={"runtime": "process", "artifact": artifact}, content=tar)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    events = read_events(resp)
    assert any(e["kind"] == "log" and e["message"] == "about to fail" for e in events)
    assert events[-1]["kind"] == "error" and "code 5" in events[-1]["message"]
    assert [e["kind"] for e in events].count("error") == 1
    assert not (agent.home / "bundles" / artifact).exists()
    assert not list((agent.home / "bundles").glob("*.tmp"))
    assert not list((agent.home / "tmp").iterdir())
    assert client.get("/v1/artifacts", params={"runtime": "process", "name": artifact}).status_code == 404

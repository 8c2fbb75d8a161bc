"""Fuzz the agent's HTTP API with schemathesis against a real agent on an sshd box (through the
tunnel). The agent serves no OpenAPI document (agent/app.py disables it), so the document is built
here from `create_app(...).openapi()` on a temp home. Replica-creating and build endpoints are left
out (they would start real work); every other operation is fuzzed: no 5xx; no/wrong token → 401."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from workbench.agent.app import create_app
from workbench.agent.home import AgentHome
from workbench.agent.supervisor import Supervisor
from workbench.remote.box import SSHBox

pytestmark = pytest.mark.sshd

#: operations that start real work on the box (builds, replicas) are not fuzzed
SKIP = {("POST", "/v1/replicas"), ("POST", "/v1/builds")}


def agent_openapi(tmp: Path) -> dict[str, Any]:
    home = AgentHome(tmp / "agent-home")
    config = home.load_or_create_config(8770)
    document: dict[str, Any] = create_app(home, config, Supervisor({})).openapi()
    return document


def test_agent_rejects_missing_and_wrong_tokens(remote: SSHBox, tmp_path: Path) -> None:
    document = agent_openapi(tmp_path)
    with httpx.Client(base_url=remote.agent_url, timeout=10) as client:
        for path, item in document["paths"].items():
            if not path.startswith("/v1/"):
                continue  # /healthz and /metrics are open by design
            if "{" in path:
                path = path.replace("{", "").replace("}", "")  # any id: auth comes first
            for method in item:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                    response = client.request(method.upper(), path, headers=headers)
                    assert response.status_code == 401, (method, path, headers, response.text)


@pytest.mark.slow
def test_agent_api_fuzz_has_no_5xx(remote: SSHBox, tmp_path: Path) -> None:
    document = agent_openapi(tmp_path)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=remote.agent_url)
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {remote.agent_token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=remote.agent_url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:200]}")

        check()
    assert failures == [], failures[:10]

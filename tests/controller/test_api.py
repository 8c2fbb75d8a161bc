"""The control API against bad input: always a 4xx with a JSON error, never a 500."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.controller.helpers import Controller, make_project


def _is_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body


def test_auth_is_required_on_v1(controller: Controller) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer"}, {"Authorization": "Bearer \u00e9\u00e9".encode("latin-1")}):
        response = httpx.get(f"{controller.url}/v1/apis", headers=headers)
        _is_json_error(response, 401)
    # a control character in a header is refused by the HTTP parser itself: still a 4xx
    response = httpx.get(f"{controller.url}/v1/apis", headers={"Authorization": "\x01garbage"})
    assert response.status_code == 400
    assert httpx.get(f"{controller.url}/healthz").json()["ok"] is True
    assert httpx.get(f"{controller.url}/metrics").status_code == 200
    assert httpx.get(f"{controller.url}/v1/openapi.json", headers=controller.headers).status_code == 200


def test_bad_requests_get_4xx_json(controller: Controller, tmp_path: Path) -> None:
    api = controller.api
    good = make_project(tmp_path, "name: good\nruntime: process\ncompute: {cpu: 0.1}\n", name="good")
    assert controller.deploy(good)[-1]["kind"] == "done"
    before = api("GET", "/v1/apis").json()
    assert [a["name"] for a in before] == ["good"]

    def refused(status: int, **request: object) -> httpx.Response:
        """A bad deploy: a JSON error, and the APIs exactly as they were (spec, replicas, updated_at)."""
        response = api("POST", "/v1/deployments", **request)  # type: ignore[arg-type]
        _is_json_error(response, status)
        assert api("GET", "/v1/apis").json() == before, request
        return response

    refused(422, content=b"{not json", headers={"Content-Type": "application/json"})
    refused(422, json={"path": 3, "extra": 1})
    refused(400, json={"path": str(tmp_path / "nowhere")})
    broken = make_project(tmp_path, "name: Bad_Name\nreplicas: -1\n")
    response = refused(400, json={"path": str(broken)})
    assert "workbench.yaml:1" in response.json()["error"] and "\n" in response.json()["error"]
    splitter = make_project(tmp_path, "kind: traffic_splitter\nname: s\napis: [{name: ghost, weight: 100}]\n",
                            name="split")
    response = refused(400, json={"path": str(splitter)})
    assert "ghost" in response.json()["error"]
    refused(400, json={"path": str(good), "apis": ["nope"]})
    refused(422, json={"path": str(good), "runtime": "vm"})
    # the deployed API's own name with a broken spec: refused, the running one untouched
    worse = make_project(tmp_path, "name: good\nruntime: process\nreplicas: -1\n", name="worse")
    response = refused(400, json={"path": str(worse)})
    assert "replicas" in response.json()["error"]
    response = api("GET", "/v1/apis/ghost")
    _is_json_error(response, 404)
    assert "ghost" in response.json()["error"]
    _is_json_error(api("DELETE", "/v1/apis/ghost"), 404)
    _is_json_error(api("POST", "/v1/apis/ghost/scale", json={"replicas": 1}), 404)
    _is_json_error(api("POST", "/v1/apis/ghost/replicas/abc/restart"), 404)
    _is_json_error(api("GET", "/v1/apis/ghost/logs"), 404)
    _is_json_error(api("GET", "/v1/events", params={"limit": "-3"}), 422)
    _is_json_error(api("GET", "/v1/nothing-here"), 404)
    _is_json_error(api("PUT", "/v1/apis"), 405)
    garbage = {"X-Weird": b"\xff\x80", "Content-Type": "application/json"}
    response = httpx.post(f"{controller.url}/v1/deployments", headers={**controller.headers, **garbage},
                          content=b"12345")
    assert 400 <= response.status_code < 500
    assert api("GET", "/v1/apis").json() == before


def test_scale_validates_its_values(controller: Controller, tmp_path: Path) -> None:
    fixed = make_project(tmp_path, "name: fixed\nruntime: process\nreplicas: 1\ncompute: {cpu: 0.1}\n")
    assert controller.deploy(fixed)[-1]["kind"] == "done"
    auto = make_project(tmp_path, "name: auto\nruntime: process\ncompute: {cpu: 0.1}\n"
                        "autoscaling: {min_replicas: 1, max_replicas: 3}\n", name="auto")
    assert controller.deploy(auto)[-1]["kind"] == "done"
    api = controller.api
    for body, status in (({"replicas": -1}, 422), ({"replicas": "many"}, 422), ({}, 400),
                         ({"min_replicas": 1}, 400), ({"replicas": 2, "bogus": 1}, 422)):
        _is_json_error(api("POST", "/v1/apis/fixed/scale", json=body), status)
    for body, status in (({"replicas": 2}, 400), ({"min_replicas": 5, "max_replicas": 2}, 400),
                         ({"max_replicas": 0}, 422)):
        _is_json_error(api("POST", "/v1/apis/auto/scale", json=body), status)
    response = api("POST", "/v1/apis/auto/scale", json={"max_replicas": 2})
    assert response.status_code == 200 and response.json()["autoscaling"]["max_replicas"] == 2
    assert controller.detail("fixed")["replicas"]["requested"] == 1
    logs = api("GET", "/v1/apis/fixed/logs", params={"tail": 5})
    assert logs.status_code == 200
    replica = controller.detail("fixed")["replica_list"][0]["id"]
    _is_json_error(api("GET", "/v1/apis/fixed/logs", params={"replica": "zzz"}), 404)
    assert api("POST", f"/v1/apis/fixed/replicas/{replica}/restart").status_code == 202


def test_schemathesis_finds_no_server_errors(controller: Controller, tmp_path: Path) -> None:
    st = shutil.which("st") or str(Path(__import__("sys").executable).with_name("st"))
    if not Path(st).exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [st, "run", f"{controller.url}/v1/openapi.json", "-H", f"Authorization: Bearer {controller.token}",
         "--checks", "not_a_server_error", "--max-examples", "15", "--request-timeout", "30",
         "--seed", "1", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_a_bad_spec_is_a_400_listing_its_problems_and_changes_nothing(controller: Controller,
                                                                       tmp_path: Path) -> None:
    good = make_project(tmp_path, "name: echo\nruntime: process\ncompute: {cpu: 0.1}\n", name="good")
    assert controller.deploy(good)[-1]["kind"] == "done"

    def apis() -> list[tuple[str, str | None, str | None]]:
        return [(a["name"], a["spec_hash"], a["artifact"]) for a in controller.api("GET", "/v1/apis").json()]

    before = apis()
    events_before = controller.api("GET", "/v1/events", params={"api": "echo"}).json()
    broken = make_project(tmp_path, "name: echo\nreplicas: -1\nserving:\n  max_concurency: 2\n",
                          name="broken")
    response = controller.api("POST", "/v1/deployments", json={"path": str(broken)})
    _is_json_error(response, 400)
    body = response.json()
    file = broken / "workbench.yaml"
    assert set(body) == {"error", "problems"} and body["problems"] == body["error"].splitlines()
    assert [p.split(": ")[:2] for p in body["problems"]] == [[f"{file}:2", "replicas"],
                                                             [f"{file}:4", "serving.max_concurency"]]
    missing = controller.api("POST", "/v1/deployments", json={"path": str(tmp_path / "nowhere")})
    _is_json_error(missing, 400)
    assert missing.json()["problems"] == [f"{tmp_path / 'nowhere'}: no such file or folder"]
    unknown = controller.api("POST", "/v1/deployments", json={"path": str(good), "apis": ["nope", "echo"]})
    _is_json_error(unknown, 400)
    assert unknown.json() == {"error": f"no API named nope in {good / 'workbench.yaml'}", "apis": ["echo"]}
    assert apis() == before
    assert controller.api("GET", "/v1/events", params={"api": "echo"}).json() == events_before

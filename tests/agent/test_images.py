"""GET/DELETE /v1/images on a real agent: the API images it built (Docker) and its bundles,
never one a replica or a container uses, never an image some other agent or person built."""

from __future__ import annotations

import json
import secrets
import subprocess

import httpx
import pytest

from tests.agent.helpers import Agent, bundle_context, make_tar, read_events, replica_request, wait_state
from tests.support.real_parts import require_docker

BASE = "workbench/python:3.11-bookworm"


def _listed(client: httpx.Client) -> dict[str, dict[str, object]]:
    response = client.get("/v1/images")
    assert response.status_code == 200, response.text
    return {item["artifact"]: item for item in response.json()}


def _tiny_image(client: httpx.Client, api: str) -> str:
    """An API-like image built through the agent (one LABEL step on the base image)."""
    marker = secrets.token_hex(6)
    tag = f"workbench/{api}:{marker}"
    files = {"Dockerfile": f"FROM {BASE}\nENV WB_PRUNE_TEST={marker}\n".encode()}
    files["workbench-build.json"] = json.dumps({"artifact": tag, "image_hash": marker * 5 + "abcd"}).encode()
    with client.stream("POST", "/v1/builds", params={"runtime": "docker", "artifact": tag},
                       content=make_tar(files), timeout=600) as response:
        response.read()
    events = read_events(response)
    assert events[-1]["kind"] == "done", events[-5:]
    return tag


@pytest.mark.docker
def test_docker_images_are_listed_and_removed_only_when_unused(agent: Agent, client: httpx.Client) -> None:
    require_docker()
    tag = _tiny_image(client, "wbtest-prune")
    stranger = f"workbench/wbtest-stranger:{secrets.token_hex(6)}"  # same label, not this agent's
    subprocess.run(["docker", "build", "-q", "-t", stranger, "--label", "workbench.image-hash=x", "-"],
                   input=f"FROM {BASE}\nENV X={secrets.token_hex(4)}\n", text=True, check=True,
                   capture_output=True)
    container = None
    try:
        listed = _listed(client)
        assert listed[tag]["api"] == "wbtest-prune" and listed[tag]["runtime"] == "docker"
        assert listed[tag]["in_use"] is False and int(listed[tag]["size_bytes"]) > 0
        assert stranger not in listed and BASE not in listed  # not ours, and a base image
        gone = client.delete("/v1/images", params={"runtime": "docker", "artifact": stranger})
        assert gone.status_code == 404
        container = subprocess.run(["docker", "create", tag], check=True, capture_output=True,
                                   text=True).stdout.strip()
        refused = client.delete("/v1/images", params={"runtime": "docker", "artifact": tag})
        assert refused.status_code == 409 and "used by a container" in refused.json()["error"]
        subprocess.run(["docker", "rm", container], check=True, capture_output=True)
        container = None
        removed = client.delete("/v1/images", params={"runtime": "docker", "artifact": tag})
        assert removed.status_code == 200, removed.text
        assert removed.json()["freed_bytes"] > 0
        assert subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0
        assert tag not in _listed(client)
        assert subprocess.run(["docker", "image", "inspect", stranger], capture_output=True).returncode == 0
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag, stranger], capture_output=True)


def test_bundles_in_use_stay(client: httpx.Client, bundle: str) -> None:
    artifact, tar = bundle_context(requirements="", extra={"prune-me.txt": secrets.token_hex(8).encode()})
    events = read_events(client.post("/v1/builds", params={"runtime": "process", "artifact": artifact},
                                     content=tar, timeout=600))
    assert events[-1]["kind"] == "done", events[-5:]
    rid = client.post("/v1/replicas", json=replica_request("process", bundle)).json()["id"]
    wait_state(client, rid, ["ready"], 60)
    listed = _listed(client)
    assert listed[bundle]["in_use"] is True and listed[artifact]["in_use"] is False
    refused = client.delete("/v1/images", params={"runtime": "process", "artifact": bundle})
    assert refused.status_code == 409
    removed = client.delete("/v1/images", params={"runtime": "process", "artifact": artifact})
    assert removed.status_code == 200 and removed.json()["freed_bytes"] > 0
    assert artifact not in _listed(client) and bundle in _listed(client)
    assert client.get("/v1/artifacts", params={"runtime": "process", "name": artifact}).status_code == 404
    bad = client.delete("/v1/images", params={"runtime": "process", "artifact": "../../etc"})
    assert bad.status_code == 400


@pytest.mark.docker
def test_the_image_hash_label_is_one_build_step(client: httpx.Client) -> None:
    """workbench's own Dockerfile sets the label: the build adds no second LABEL step; a
    Dockerfile without it (a container API's) gets it from the build, in one step too."""
    require_docker()
    marker = secrets.token_hex(6)
    image_hash = (marker * 6)[:64]
    for own_label in (True, False):
        tag = f"workbench/wbtest-label:{marker}{int(own_label)}"
        dockerfile = f"FROM {BASE}\nENV WB_LABEL_TEST={marker}{int(own_label)}\n"
        if own_label:
            dockerfile += f'LABEL workbench.image-hash="{image_hash}"\n'
        files = {"Dockerfile": dockerfile.encode(),
                 "workbench-build.json": json.dumps({"artifact": tag, "image_hash": image_hash}).encode()}
        try:
            events = read_events(client.post("/v1/builds", params={"runtime": "docker", "artifact": tag},
                                             content=make_tar(files), timeout=600))
            assert events[-1]["kind"] == "done", events[-5:]
            labels = [e for e in events if e["kind"] == "step" and str(e.get("message")).startswith("LABEL ")]
            assert len(labels) == 1, events
            inspected = subprocess.run(["docker", "image", "inspect", "--format",
                                        "{{index .Config.Labels \"workbench.image-hash\"}}", tag],
                                       capture_output=True, text=True, check=True).stdout.strip()
            assert inspected == image_hash
        finally:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)

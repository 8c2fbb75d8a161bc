"""Models through a real agent's API: files sent over PUT /v1/models/blobs (resumed, checked),
a replica refused until its model is in, a Docker replica that sees it read-only at its mount
(writing fails, even as root), removing a model in use refused."""

from __future__ import annotations

import hashlib
import os
import subprocess

import httpx
import pytest

from tests.agent.helpers import replica_request, wait_state
from workbench.weights.resolve import version_id
from workbench.wire.model_cache import ModelFile, ModelManifest, ModelMount

FILES = {"weights.bin": os.urandom(3 << 20), "config.json": b'{"hidden": 8}'}


def manifest() -> ModelManifest:
    files = [ModelFile(path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for p, d in FILES.items()]
    identity = {"kind": "files", "files": [[f.path, f.size, f.sha256] for f in files]}
    return ModelManifest(id=version_id(identity), name="tiny", source="./tiny", files=files)


def send(client: httpx.Client, model: ModelManifest) -> None:
    prepared = client.post(f"/v1/models/{model.id}/prepare", content=model.model_dump_json(),
                           headers={"Content-Type": "application/json"})
    assert prepared.status_code == 200, prepared.text
    for item in model.files:
        data = FILES[item.path]
        if item.sha256 not in prepared.json()["missing"]:
            continue
        # the first PUT is cut short (the link dropped after 1 MB): what arrived is kept
        half = client.put(f"/v1/models/blobs/{item.sha256}", params={"offset": 0, "size": len(data)},
                          content=data[: 1 << 20])
        assert half.json() == {"sha256": item.sha256, "size": min(len(data), 1 << 20),
                               "complete": len(data) <= 1 << 20}
        state = client.get(f"/v1/models/blobs/{item.sha256}/state").json()
        if not state["complete"]:
            rest = client.put(f"/v1/models/blobs/{item.sha256}", params={"offset": state["size"],
                                                                         "size": len(data)},
                              content=data[state["size"]:])
            assert rest.status_code == 200 and rest.json()["complete"], rest.text
    committed = client.post(f"/v1/models/{model.id}/commit", content=model.model_dump_json(),
                            headers={"Content-Type": "application/json"})
    assert committed.status_code == 200, committed.text


def test_a_wrong_file_is_discarded_and_a_model_is_required_before_a_replica(client: httpx.Client) -> None:
    data = os.urandom(1 << 20)
    claimed = hashlib.sha256(b"not these bytes").hexdigest()
    wrong = client.put(f"/v1/models/blobs/{claimed}", params={"offset": 0, "size": len(data)}, content=data)
    assert wrong.status_code == 400 and "discarded" in wrong.json()["error"]
    assert client.get(f"/v1/models/blobs/{claimed}/state").json() == {"sha256": claimed, "size": 0,
                                                                      "complete": False}
    other = ModelManifest(id=hashlib.sha256(b"absent").hexdigest(), name="absent", source="./absent",
                          files=[ModelFile(path="a.bin", size=1, sha256=claimed)])
    request = replica_request("process", "no-such-bundle")
    request["models"] = [ModelMount.of(other, "/models/absent").model_dump()]
    refused = client.post("/v1/replicas", json=request)
    assert refused.status_code == 409 and "not in this host's cache" in refused.json()["error"]


@pytest.mark.docker
@pytest.mark.usefixtures("docker_required")
def test_a_docker_replica_sees_its_model_read_only(client: httpx.Client,
                                                   docker_image: tuple[str, list[dict[str, object]]]) -> None:
    model = manifest()
    send(client, model)
    cached = client.get("/v1/models").json()
    assert [m["id"] for m in cached["models"]] == [model.id]
    request = replica_request("docker", docker_image[0], api="reader")
    request["models"] = [ModelMount.of(model, "/models/tiny").model_dump()]
    created = client.post("/v1/replicas", json=request)
    assert created.status_code == 201, created.text
    info = wait_state(client, created.json()["id"], ["ready"], 120)
    container = info["container_id"]

    def inside(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True,
                              timeout=60)

    env = inside("sh", "-c", "echo $WORKBENCH_MODEL_DIR $WORKBENCH_MODEL_DIR_TINY $(id -u)").stdout.split()
    assert env[:2] == ["/models/tiny", "/models/tiny"]
    assert inside("cat", "/models/tiny/config.json").stdout == FILES["config.json"].decode()
    digest = inside("sha256sum", "/models/tiny/weights.bin").stdout.split()[0]
    assert digest == hashlib.sha256(FILES["weights.bin"]).hexdigest()
    for attempt in (["sh", "-c", "echo x >> /models/tiny/config.json"],
                    ["sh", "-c", "echo x > /models/tiny/new-file"], ["rm", "/models/tiny/weights.bin"]):
        wrote = inside(*attempt)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, (attempt, wrote)
    mounts = subprocess.run(["docker", "inspect", "-f", "{{json .Mounts}}", container], capture_output=True,
                            text=True, check=True).stdout
    assert '"RW":false' in mounts and '"Destination":"/models/tiny"' in mounts

    listed = client.get("/v1/models").json()["models"][0]
    assert listed["used_by"] == ["reader"] and listed["replicas"] == [info["id"]]
    in_use = client.delete(f"/v1/models/{model.id}")
    assert in_use.status_code == 409
    assert client.delete(f"/v1/replicas/{info['id']}", params={"grace": 0}).status_code == 204
    assert client.delete(f"/v1/models/{model.id}").status_code == 204
    assert client.get("/v1/models").json()["models"] == []

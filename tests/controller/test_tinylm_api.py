"""examples/tinylm as workbench deploys it: a container API from its own Dockerfile (its
workbench.yaml as it is), answering OpenAI-style through the router, streaming, scaled, rolled to
a new image, kept serving when the next image cannot start; and the same server as a
process-runtime command."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.controller.helpers import Controller, Load
from tests.support.real_parts import EXAMPLES, Workbench, require_docker, wait_until

pytestmark = pytest.mark.docker

CHAT = {"model": "tinylm", "messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 8,
        "seed": 1}


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """One controller for the module; the images its deploys built are removed afterwards."""
    require_docker()
    bench = Workbench.create(tmp_path_factory.mktemp("tinylm") / "home")
    controller = Controller(bench)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        bench.cleanup()
        built = subprocess.run(["docker", "images", "-q", "--filter", "reference=workbench/tinylm*"],
                               capture_output=True, text=True, check=False).stdout.split()
        if built:
            subprocess.run(["docker", "rmi", "-f", *set(built)], capture_output=True, check=False)


def copy_of_tinylm(folder: Path) -> Path:
    shutil.copytree(EXAMPLES / "tinylm", folder,
                    ignore=shutil.ignore_patterns("model.npz", "*.tmp.npz", "__pycache__", "*.pyc", "certs"))
    return folder


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_tinylm_from_its_dockerfile(ctl: Controller, tmp_path: Path) -> None:
    project = copy_of_tinylm(tmp_path / "tinylm")
    spec = (project / "workbench.yaml").read_text()
    assert "  cpu: 1\n" in spec
    # its workbench.yaml, but half a core a replica: two replicas and a surge one fit two cores
    (project / "workbench.yaml").write_text(spec.replace("  cpu: 1\n", "  cpu: 0.5\n"))
    events = ctl.deploy(project)
    assert events[-1]["kind"] == "done", events[-5:]
    (result,) = events[-1]["results"]
    assert result["built"] and result["artifact"].startswith("workbench/tinylm:")

    answer = httpx.post(f"{ctl.url}/tinylm/v1/chat/completions", json=CHAT, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion" and answer.json()["choices"][0]["message"]["content"]
    models = httpx.get(f"{ctl.url}/tinylm/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == ["tinylm"]
    body = {"model": "tinylm", "prompt": "Alice was", "max_tokens": 12, "stream": True}
    with httpx.stream("POST", f"{ctl.url}/tinylm/v1/completions", json=body, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        data = sse_events(stream)
    assert data[-1] == "[DONE]" and len(data) >= 12, data
    assert all(json.loads(item)["object"] == "text_completion" for item in data[:-1])

    # the front door (openai: {models: [tinylm]} in its workbench.yaml), with the openai package
    door = openai.OpenAI(base_url=f"{ctl.url}/openai/v1", api_key="unused", max_retries=0, timeout=30)
    assert [(m.id, m.owned_by) for m in door.models.list().data] == [("tinylm", "tinylm")]
    tokens = door.chat.completions.create(model="tinylm", messages=CHAT["messages"], max_tokens=6,
                                          stream=True)
    assert len([c for c in tokens if c.choices and c.choices[0].delta.content]) == 6
    with pytest.raises(openai.NotFoundError):
        door.completions.create(model="tinylm-xl", prompt="A", max_tokens=1)

    row = next(line for line in ctl.bench.run("get").stdout.splitlines() if line.startswith("tinylm "))
    assert row.split()[:2] == ["tinylm", "live"], row

    assert ctl.api("POST", "/v1/apis/tinylm/scale", json={"replicas": 2}).status_code == 200
    ctl.wait_ready("tinylm", 2)

    # a changed image (a cached rebuild: one more layer) rolls out under load; the file says
    # replicas: 2 now (a deploy sets the count the file says)
    with (project / "workbench.yaml").open("a") as spec_file:
        spec_file.write("replicas: 2\n")
    dockerfile = (project / "Dockerfile").read_text()
    (project / "Dockerfile").write_text(dockerfile + 'LABEL org.example.revision="2"\n')
    with Load(f"{ctl.url}/tinylm/v1/chat/completions", clients=2, payload=CHAT) as load:
        rolled = ctl.deploy(project)
    assert rolled[-1]["kind"] == "done", rolled[-3:]
    assert rolled[-1]["results"][0]["artifact"] != result["artifact"]
    assert load.failures == [] and load.ok > 0, load.failures[:3]
    good = ctl.wait_ready("tinylm", 2)

    # an image whose server cannot start (no model, and told not to train one): the old one serves on
    (project / "Dockerfile").write_text(dockerfile + "ENV TINYLM_MODEL_PATH=/nowhere/model.npz\n")
    with Load(f"{ctl.url}/tinylm/v1/chat/completions", clients=2, payload=CHAT) as load:
        broken = ctl.deploy(project)
    assert broken[-1]["kind"] == "error", broken[-3:]
    assert "previous version keeps serving" in broken[-1]["message"], broken[-1]["message"]
    assert any("/nowhere/model.npz" in line for line in broken[-1]["log_tail"]), broken[-1]["log_tail"]
    assert load.failures == [] and load.ok > 0, load.failures[:3]
    assert ctl.detail("tinylm")["spec_hash"] == good["spec_hash"]
    assert ctl.api("DELETE", "/v1/apis/tinylm").status_code == 200
    wait_until(lambda: ctl.agent_replicas("tinylm") == [], 60, what="the replicas of tinylm removed")


def test_tinylm_as_a_process_api(ctl: Controller, tmp_path: Path) -> None:
    project = copy_of_tinylm(tmp_path / "tinylm-proc")
    (project / "workbench.yaml").write_text(
        "name: tinylm-proc\nruntime: process\n"
        "container:\n  command: [python, -m, tinylm]\n  health: /health\n  startup_timeout: 120\n"
        "  env: {TINYLM_MODEL_NAME: tinylm, TINYLM_TOKEN_DELAY: '0.01'}\n")
    events = ctl.deploy(project)
    assert events[-1]["kind"] == "done", events[-5:]
    assert events[-1]["results"][0]["runtime"] == "process"
    answer = httpx.post(f"{ctl.url}/tinylm-proc/v1/chat/completions", json=CHAT, timeout=30)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"], answer.text
    assert ctl.api("DELETE", "/v1/apis/tinylm-proc").status_code == 200
    wait_until(lambda: ctl.agent_replicas("tinylm-proc") == [], 60, what="the replicas removed")

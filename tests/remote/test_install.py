"""The agent installed over SSH (once per session, on a box of its own): tunnel, token, repair,
upgrade, replicas, remove. Each test gets the agent installed and running (the `remote` fixture
repairs what an earlier test stopped or purged), so they pass in any order."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from workbench.remote import install
from workbench.remote.box import SSHBox
from workbench.remote.layout import Layout

from tests.support.real_parts import EXAMPLES, wait_until
from tests.support.sshd import Box
from workbench import __version__
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.build import ensure_artifact, plan_artifact
from workbench.controller.replica_request import replica_request
from workbench.spec.loader import load_specs
from workbench.wire.agent import BuildEvent, ReplicaState
from workbench.wire.replica import RUNTIME_CONFIG_ENV, RuntimeConfig

pytestmark = pytest.mark.sshd


def test_agent_answers_through_the_tunnel(remote: SSHBox) -> None:
    assert remote.agent_url.startswith("http://127.0.0.1:")
    with remote.agent_client() as client:
        info = client.host()
    assert info.agent_version == __version__
    assert "process" in info.runtimes
    assert httpx.get(remote.agent_url + "/v1/host").status_code == 401  # the token is required


def test_install_again_is_a_repair_noop(remote: SSHBox) -> None:
    steps: list[str] = []
    access = remote.install(progress=lambda step, _: steps.append(step))
    assert "install" not in steps and "upload" not in steps and "start" not in steps
    assert access.started is None and "token" not in repr(access)


def test_stopped_agent_is_restarted_by_install(remote: SSHBox, remote_box: Box) -> None:
    layout = Layout.for_home(str(remote_box.home))
    _, out, _ = remote.ssh.run(["cat", str(layout.root / "agent.pid")])
    pid = int(out.strip())
    remote.ssh.run(["kill", "-9", str(pid)])
    wait_until(lambda: remote.ssh.run(["kill", "-0", str(pid)])[0] != 0, 10, what="agent gone")
    access = remote.install()
    assert access.started == "daemon"
    with remote.agent_client() as client:
        assert client.healthy()


def test_upgrade_detected_from_the_version_marker(remote: SSHBox, remote_box: Box) -> None:
    layout = Layout.for_home(str(remote_box.home))
    assert not remote.needs_upgrade()
    old = json.dumps({"version": "0.0.1", "build": "old"})
    with remote.ssh.sftp() as sftp, sftp.open(str(layout.marker), "w") as handle:
        handle.write(old)
    assert remote.installed_version() == "0.0.1" and remote.needs_upgrade()
    steps: list[str] = []
    remote.upgrade(progress=lambda step, _: steps.append(step))
    assert {"install", "start", "wait"} <= set(steps)
    assert remote.installed_version() == __version__ and not remote.needs_upgrade()
    with remote.agent_client() as client:
        assert client.host().agent_version == __version__


def test_serving_replica_on_the_box_answers_via_endpoint_url(remote: SSHBox, remote_box: Box) -> None:
    """A predictor runtime (examples/echo) on the box's 127.0.0.1, reached through endpoint_url."""
    layout = Layout.for_home(str(remote_box.home))
    project = f"{remote_box.home}/echo-project"
    remote.ssh.run(["mkdir", "-p", project], check=True)
    for name in ("predictor.py", "workbench.yaml"):
        remote.ssh.put(EXAMPLES / "echo" / name, f"{project}/{name}")
    port = int(remote.ssh.run(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0));"
                               " print(s.getsockname()[1])"], check=True)[1])
    config = RuntimeConfig(api="echo", project_dir=project).model_dump_json()
    launch = ("import subprocess, sys; print(subprocess.Popen(sys.argv[1:], start_new_session=True, "
              "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    serve = ["env", f"{RUNTIME_CONFIG_ENV}={config}", str(layout.python), "-m", "workbench.serving",
             "--port", str(port)]
    pid = remote.ssh.run([str(layout.python), "-c", launch, *serve], check=True)[1].strip()
    try:
        local = remote.endpoint_url(f"http://127.0.0.1:{port}/readyz")
        assert local.endswith("/readyz") and f":{port}/" not in local
        wait_until(lambda: _status(local) == 200, 60, what="replica ready")
        response = httpx.post(remote.endpoint_url(f"http://127.0.0.1:{port}/"), json={"hello": "box"})
        assert response.status_code == 200 and response.json() == {"hello": "box"}
    finally:
        remote.ssh.run(["kill", "-TERM", "--", f"-{int(pid)}"])  # its own session/process group
        remote.ssh.run(["rm", "-rf", project])


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_process_replica_answers_via_endpoint_url(remote: SSHBox) -> None:
    [loaded] = load_specs(EXAMPLES / "echo")
    def build(event: BuildEvent) -> None:
        assert event.kind != "error", event.message

    plan = plan_artifact(loaded, "process", None)

    async def ensure() -> bool:
        async with AsyncAgentClient(remote.agent_url, remote.agent_token, timeout=300) as agent:
            return await ensure_artifact(agent, plan, say=lambda _: None, on_build=build)

    asyncio.run(ensure())
    with remote.agent_client(timeout=300) as client:
        request = replica_request(loaded.spec, "process", plan.artifact, plan.image_hash)
        replica = client.create_replica(request)
        try:
            ready = wait_until(lambda: (r := client.replica(replica.id)).state == ReplicaState.READY and r,
                               120, what="replica ready")
            assert ready.url is not None and ready.url.startswith("http://127.0.0.1:")
            local = remote.endpoint_url(ready.url)
            assert local != ready.url and remote.endpoint_url(ready.url) == local
            response = httpx.post(local + "/", json={"hello": "box"}, timeout=30)
            assert response.status_code == 200 and response.json() == {"hello": "box"}
        finally:
            client.delete_replica(replica.id, grace=5)


def test_paramiko_tunnel_reaches_the_agent(remote: SSHBox, remote_box: Box, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.remote.conftest import trusted

    other = SSHBox(remote_box.target, identity=remote_box.client_key,
                   known_hosts=trusted(remote_box, tmp_path),
                       ssh_config=tmp_path / "none", tunnel="paramiko").connect()
    try:
        assert other.agent_url != remote.agent_url
        with other.agent_client() as client:
            assert client.host().agent_version == __version__
    finally:
        other.close()


def test_remove_purge_leaves_home_clean(remote: SSHBox, remote_box: Box) -> None:
    # the model cache's trees are read-only (as agent/models/store.py files them): purge removes them
    tree = install.layout_of(remote.ssh).root / "models" / "trees" / "t1"
    remote.ssh.run(["mkdir", "-p", str(tree)], check=True)
    script = 'echo weights > "$1/model.bin" && chmod 0444 "$1/model.bin" && chmod 0555 "$1"'
    remote.ssh.run(["sh", "-c", script, "sh", str(tree)], check=True)
    remote.remove(purge=True)
    assert remote.installed_version() is None
    assert not any(name.startswith(".workbench") for name in remote_box.home_listing())
    assert install.access(remote.ssh) is None

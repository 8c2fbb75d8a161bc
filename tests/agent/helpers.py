"""Helpers for the agent tests: a real agent subprocess, build contexts, polling."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

T = TypeVar("T")

PREDICTOR = """
import os

if os.environ.get("WB_TEST_CRASH"):
    raise RuntimeError("boom-at-import: the test predictor was told to crash")


class Predictor:
    def __init__(self, config):
        self.config = config
        try:
            import six
            self.six = six.__version__
        except ImportError:
            self.six = None

    def predict(self, payload):
        print("predict called", flush=True)
        return {"echo": payload, "six": self.six, "built": os.path.exists("built.txt")}
"""

DOCKERFILE = """ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY certs/ca.pem /etc/workbench-ca.pem
ENV PIP_CERT=/etc/workbench-ca.pem PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir \\
    fastapi uvicorn prometheus-client python-multipart pydantic
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/runtime
COPY runtime/ /opt/runtime/
COPY project/ /app/
WORKDIR /app
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (httpx.HTTPError, OSError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def runtime_files() -> dict[str, bytes]:
    """workbench/__init__.py, workbench/wire/*.py and workbench/serving/*.py under runtime/."""
    files = {}
    src = REPO / "workbench"
    wire, serving = sorted((src / "wire").glob("*.py")), sorted((src / "serving").glob("*.py"))
    for path in [src / "__init__.py", *wire, *serving]:
        files["runtime/workbench/" + str(path.relative_to(src))] = path.read_bytes()
    return files


def digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name] + b"\0")
    return h.hexdigest()[:12]


def docker_context() -> tuple[str, bytes]:
    """(artifact tag, tar.gz) of the test replica image."""
    files = {"Dockerfile": DOCKERFILE.encode(), "project/predictor.py": PREDICTOR.encode()}
    files.update(runtime_files())
    files["certs/ca.pem"] = CA_BUNDLE.read_bytes()
    tag = f"workbench-test/agent-replica:{digest(files)}"
    spec = {
        "artifact": tag,
        "image_hash": digest(files),
        "base_image": "python:3.11-slim",
        "ca_bundle": "certs/ca.pem",
    }
    files["workbench-build.json"] = json.dumps(spec).encode()
    return tag, make_tar(files)


def bundle_context(
    requirements: str = "six\n",
    commands: list[list[str]] | None = None,
    extra: dict[str, bytes] | None = None,
) -> tuple[str, bytes]:
    """(artifact, tar.gz) of a process bundle with a requirements file and a build command."""
    if commands is None:
        commands = [["python", "-c", "open('built.txt', 'w').write('ok')"]]
    files = {
        "project/predictor.py": PREDICTOR.encode(),
        "project/requirements.txt": requirements.encode(),
        "certs/ca.pem": CA_BUNDLE.read_bytes(),
        **(extra or {}),
    }
    spec = {
        "requirements": ["project/requirements.txt"] if requirements else [],
        "build_commands": commands,
        "ca_bundle": "certs/ca.pem",
    }
    files["workbench-build.json"] = json.dumps(spec).encode()
    return f"test-bundle-{digest(files)}", make_tar(files)


def replica_request(
    runtime: str, artifact: str, api: str = "echo", env: dict[str, str] | None = None, **serving: Any
) -> dict[str, Any]:
    return {
        "api": api,
        "spec_hash": "spec123",
        "runtime": runtime,
        "artifact": artifact,
        "runtime_config": {
            "api": api,
            "project_dir": "/ignored",
            "serving": {"graceful_shutdown": 2, **serving},
        },
        "env": env or {},
    }


def read_events(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


class Agent:
    """A real `python -m workbench.agent serve` subprocess on a temp home."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = env
        self.output = home.parent / f"{home.name}-agent-output.txt"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.home / "config.json").read_text())

    def start(self, timeout: float = 30) -> Agent:
        env = dict(os.environ if self.env is None else self.env)
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workbench.agent",
                    "serve",
                    "--home",
                    str(self.home),
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(self._healthy, timeout, "the agent to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.output.read_text()[-2000:]}")
        return httpx.get(self.url + "/healthz", timeout=1).status_code == 200

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {self.config['token']}"}
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        """Stop the agent and everything it started: its containers and process replicas."""
        self.kill(signal.SIGTERM)
        remove_containers(self.home)
        for meta in (self.home / "replicas").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                pid = json.loads(meta.read_text()).get("pid")
                if pid:
                    os.killpg(pid, signal.SIGKILL)


def remove_containers(home: Path) -> None:
    try:
        agent_id = json.loads((home / "config.json").read_text())["agent_id"]
    except (OSError, ValueError, KeyError):
        return
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=workbench.agent={agent_id}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def containers_of(agent: Agent) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=workbench.agent={agent.config['agent_id']}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def wait_state(
    client: httpx.Client, rid: str, states: Iterable[str], timeout: float, **match: Any
) -> dict[str, Any]:
    """Poll GET /v1/replicas/{rid} until its state is one of `states` (and fields match)."""
    wanted = set(states)

    def check() -> dict[str, Any] | None:
        info = client.get(f"/v1/replicas/{rid}").json()
        ok = info.get("state") in wanted and all(info.get(k) == v for k, v in match.items())
        return info if ok else None

    return wait_for(check, timeout, f"replica {rid} to be {'/'.join(sorted(wanted))}", every=0.1)


def server_files() -> dict[str, bytes]:
    """The echo server of tests/support with its Dockerfile and a version file."""
    from tests.support.echo_server import DOCKERFILE, HERE

    return {"Dockerfile": DOCKERFILE.encode(), "echo_server.py": (HERE / "echo_server.py").read_bytes(),
            "version.txt": b"agent\n"}


def server_context() -> tuple[str, bytes]:
    """(tag, tar.gz) of a container API's own Dockerfile build: the project's files at the root."""
    files = server_files()
    tag = f"workbench-test/agent-server:{digest(files)}"
    files["workbench-build.json"] = json.dumps(
        {"kind": "dockerfile", "dockerfile": "Dockerfile", "artifact": tag, "image_hash": digest(files)}
    ).encode()
    return tag, make_tar(files)


def server_bundle_context() -> tuple[str, bytes]:
    """(artifact, tar.gz) of a process bundle holding the echo server's project files."""
    files = {f"project/{name}": data for name, data in server_files().items()}
    files["workbench-build.json"] = b"{}"
    return f"test-server-bundle-{digest(files)}", make_tar(files)


def server_request(runtime: str, artifact: str, api: str = "srv", env: dict[str, str] | None = None,
                   **server: Any) -> dict[str, Any]:
    """A container API's replica: `server` holds ServerConfig's fields (command, port, health…)."""
    return {"api": api, "spec_hash": "srv123", "runtime": runtime, "artifact": artifact,
            "server": {"graceful_shutdown": 1, **server}, "env": env or {}}

"""Direct mode on the agent: the token-checked replica proxy route, TLS, and the bind refusals.

Real agent subprocesses and a real process replica (a bundle without requirements: no index)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.helpers import Agent, bundle_context, free_port, read_events, replica_request, wait_for
from workbench.clients.agent import AgentClient
from workbench.wire.errors import WorkbenchError


def make_cert(folder: Path, ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `ips`; returns (cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workbench test agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "agent.crt", folder / "agent.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


class DirectAgent(Agent):
    """An agent started with extra `serve` arguments (direct mode, TLS); `scheme` for its URL."""

    def __init__(self, home: Path, args: list[str], bind: str = "127.0.0.1", scheme: str = "http",
                 ca: Path | None = None) -> None:
        super().__init__(home)
        self.args, self.bind, self.scheme, self.ca = args, bind, scheme, ca

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bind}:{self.port}"

    def start(self, timeout: float = 30) -> Agent:
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.agent", "serve", "--home", str(self.home),
                 "--port", str(self.port), *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
            )
        wait_for(self._healthy, timeout, "the agent to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.output.read_text()[-2000:]}")
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        return httpx.get(self.url + "/healthz", timeout=1, verify=verify).status_code == 200


@pytest.fixture(scope="module")
def plain_bundle(agent: Agent) -> str:
    """A process bundle with no requirements and no build command (no package index needed)."""
    artifact, tar = bundle_context(requirements="", commands=[])
    with agent.client(timeout=300) as c:
        resp = c.post("/v1/builds", params={"runtime": "process", "artifact": artifact}, content=tar)
    events = read_events(resp)
    assert events[-1]["kind"] == "done", events[-5:]
    return artifact


@pytest.fixture
def replica(client: httpx.Client, plain_bundle: str) -> dict[str, object]:
    info = client.post("/v1/replicas", json=replica_request("process", plain_bundle)).json()

    def ready() -> dict[str, object] | None:
        body = client.get(f"/v1/replicas/{info['id']}").json()
        return body if body["state"] == "ready" else None

    return wait_for(ready, 60, "the replica to be ready")


def test_proxy_forwards_with_the_token_only(agent: Agent, client: httpx.Client,
                                            replica: dict[str, object]) -> None:
    rid = replica["id"]
    path = f"/v1/replicas/{rid}/proxy/"
    answer = client.post(path, json={"x": 1}, headers={"X-Custom": "kept"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["echo"] == {"x": 1}
    assert answer.headers["content-type"].startswith("application/json")
    # the replica's readiness endpoint, and a query string, through the same route
    assert client.get(f"/v1/replicas/{rid}/proxy/readyz?probe=1").status_code == 200
    assert client.get(f"/v1/replicas/{rid}/proxy/no%20such%2Fpath").status_code == 404  # kept encoded
    # a 2 MB body streamed both ways (chunked request: no Content-Length)
    big = {"blob": "x" * (2 * 1024 * 1024)}
    data = json.dumps(big).encode()
    streamed = client.post(path, content=iter([data[:1000], data[1000:]]),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 200, streamed.text[:300]
    assert streamed.json()["echo"] == big

    token = agent.config["token"]
    assert httpx.post(agent.url + path, json=1).status_code == 401
    wrong = httpx.post(agent.url + path, json=1, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    unknown = client.post("/v1/replicas/nosuchreplica/proxy/", json=1)
    assert unknown.status_code == 404 and "nosuchreplica" in unknown.json()["error"]
    assert token not in answer.text


def test_proxy_answers_502_json_when_the_replica_is_down(client: httpx.Client,
                                                         replica: dict[str, object]) -> None:
    rid, pid = replica["id"], replica["pid"]
    assert isinstance(pid, int)
    os.killpg(pid, signal.SIGKILL)  # the supervisor restarts it after a back-off: poll for the gap
    deadline = time.monotonic() + 10
    seen: list[int] = []
    while time.monotonic() < deadline:
        resp = client.post(f"/v1/replicas/{rid}/proxy/", json=1)
        seen.append(resp.status_code)
        if resp.status_code == 502:
            assert resp.headers["content-type"].startswith("application/json")
            assert str(rid) in resp.json()["error"]
            return
        time.sleep(0.02)
    raise AssertionError(f"no 502 while the replica was down: {seen[-10:]}")


# -- TLS and the bind rules ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectAgent]:
    folder = tmp_path_factory.mktemp("tls-agent")
    cert, key = make_cert(folder / "certs")
    a = DirectAgent(folder / "home", ["--direct", "--bind", "127.0.0.1", "--tls-cert", str(cert),
                                      "--tls-key", str(key)], scheme="https", ca=cert)
    try:
        a.start()
        yield a
    finally:
        a.cleanup()


def test_tls_agent_verified_with_its_certificate(tls_agent: DirectAgent) -> None:
    token = tls_agent.config["token"]
    with AgentClient(tls_agent.url, token, timeout=10, verify=tls_agent.ca or True) as client:
        assert client.host().agent_version
        assert client.replicas() == []
    with AgentClient(tls_agent.url, token, timeout=10) as client, pytest.raises(WorkbenchError) as failed:
        client.host()
    text = str(failed.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text
    with AgentClient(tls_agent.url, "wrong", timeout=10, verify=str(tls_agent.ca)) as client, \
            pytest.raises(WorkbenchError) as refused:
        client.host()
    assert refused.value.status == 401
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets nowhere
        httpx.get(f"http://127.0.0.1:{tls_agent.port}/v1/host", timeout=3,
                  headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    assert "WARNING" not in tls_agent.output.read_text()


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.agent", "serve", "--home", str(home),
                           "--port", str(free_port()), *args], capture_output=True, text=True, timeout=60)


def test_non_loopback_bind_needs_direct_and_tls_needs_both_files(tmp_path: Path) -> None:
    refused = _serve(tmp_path / "a", "--bind", "127.0.0.2")
    assert refused.returncode != 0 and "refusing to listen on 127.0.0.2" in refused.stderr
    assert "--direct" in refused.stderr
    cert, _ = make_cert(tmp_path / "certs")
    half = _serve(tmp_path / "b", "--direct", "--bind", "127.0.0.1", "--tls-cert", str(cert))
    assert half.returncode != 0 and "--tls-cert and --tls-key" in half.stderr
    missing = _serve(tmp_path / "c", "--direct", "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_direct_without_tls_warns(tmp_path: Path) -> None:
    a = DirectAgent(tmp_path / "home", ["--direct", "--bind", "127.0.0.1"])
    try:
        a.start()
        text = a.output.read_text()
        assert "WARNING: direct mode without TLS" in text and "http://127.0.0.1:" in text
    finally:
        a.cleanup()

"""Direct mode end to end: a real controller (subprocess, its own WORKBENCH_HOME) and a second real
agent started by hand in direct mode over TLS (its own home, 127.0.0.2 when bindable); `workbench
host add box HOST:PORT --direct --token-file F --ca-cert C`; an API spread over local + box answers
from both (the box's replica through the agent's proxy route); a controller restart restores the box;
remove forgets the token. Process runtime (fast); no SSH anywhere."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.test_proxy import DirectAgent, make_cert
from tests.controller.helpers import Controller, echo_project
from tests.support.real_parts import Workbench, wait_until
from workbench.router.health import HealthChecker
from workbench.router.pool import EndpointState
from workbench.router.proxy import Upstream
from workbench.router.types import Endpoint

pytestmark = pytest.mark.slow

ECHO = "name: echo\nruntime: process\nreplicas: 3\ncompute: {cpu: 0.1, mem: 64Mi}\n"


def _bind_address() -> str:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    bench = Workbench.create(tmp_path_factory.mktemp("direct") / "home")
    try:
        yield bench
    finally:
        bench.cleanup()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectAgent]:
    folder = tmp_path_factory.mktemp("box")
    address = _bind_address()
    cert, key = make_cert(folder / "certs", ips=(address,))
    agent = DirectAgent(folder / "home", ["--direct", "--bind", address, "--tls-cert", str(cert),
                                          "--tls-key", str(key)], bind=address, scheme="https", ca=cert)
    try:
        agent.start()
        yield agent
    finally:
        agent.cleanup()


@pytest.fixture(scope="module")
def ctl(bench: Workbench, box: DirectAgent) -> Iterator[Controller]:
    controller = Controller(bench, port=bench.port)
    controller.start()
    try:
        yield controller
    finally:
        controller.api("DELETE", "/v1/hosts/box", timeout=120)
        controller.stop()


@pytest.fixture(scope="module")
def token_file(box: DirectAgent, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "box.token"
    path.write_text(box.config["token"] + "\n")
    path.chmod(0o600)
    return path


def test_refusals_say_what_to_fix(ctl: Controller, bench: Workbench, box: DirectAgent, token_file: Path,
                                  tmp_path: Path) -> None:
    target = f"{box.bind}:{box.port}"
    no_token = bench.run("host", "add", "box", target, "--direct", check=False)
    assert no_token.returncode == 2 and "--token-file" in no_token.stderr
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    refused = bench.run("host", "add", "box", target, "--direct", "--token-file", str(wrong),
                        "--ca-cert", str(box.ca), check=False)
    assert refused.returncode == 1 and "refused the token" in refused.stderr, refused.stderr
    untrusted = bench.run("host", "add", "box", f"https://{target}", "--direct", "--token-file",
                          str(token_file), check=False)
    assert untrusted.returncode == 1 and "--ca-cert" in untrusted.stderr, untrusted.stderr
    bad = ctl.api("POST", "/v1/hosts", json={"name": "box", "target": "ftp://x:1", "direct": True,
                                             "token": "t"})
    assert bad.status_code == 400
    no_direct = ctl.api("POST", "/v1/hosts", json={"name": "box", "target": target, "token": "t"})
    assert no_direct.status_code == 400
    assert ctl.api("GET", "/v1/hosts/box").status_code == 404
    assert not (bench.home / "controller" / "hosts" / "box.token").exists()


def test_add_direct_host_and_serve_across_it(ctl: Controller, bench: Workbench, box: DirectAgent,
                                             token_file: Path, tmp_path: Path) -> None:
    token = box.config["token"]
    result = bench.run("host", "add", "box", f"{box.bind}:{box.port}", "--direct",
                       "--token-file", str(token_file), "--ca-cert", str(box.ca))
    assert token not in result.stdout + result.stderr
    shown = bench.json("host", "show", "box")
    assert isinstance(shown, dict)
    assert shown["kind"] == "direct" and shown["state"] == "ready", shown
    assert shown["address"] == f"https://{box.bind}:{box.port}"
    stored = bench.home / "controller" / "hosts" / "box.token"
    assert stored.read_text().strip() == token
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert token.encode() not in (bench.home / "controller" / "state.db").read_bytes()
    for log in (bench.home / "controller" / "controller.log", bench.home / "controller-test.out"):
        assert not log.is_file() or token not in log.read_text(errors="replace")

    assert ctl.deploy(echo_project(tmp_path, yaml=ECHO))[-1]["kind"] == "done"
    ctl.wait_ready("echo", 3, timeout=240)
    _predictions_land_on_both(ctl)
    on_box = [r["id"] for r in ctl.detail("echo")["replica_list"] if r["host"] == "box"]
    assert asyncio.run(_router_parts_reach(box, on_box[0]))

    # a controller restart restores the box from the DB and its token file
    ctl.stop()
    ctl.start()
    wait_until(lambda: ctl.api("GET", "/v1/hosts/box").json().get("state") == "ready", 60,
               what="the direct host to be ready again")
    ctl.wait_ready("echo", 3, timeout=120)
    _predictions_land_on_both(ctl)

    removed = bench.run("host", "remove", "box", "--yes", "--json")
    assert json.loads(removed.stdout)["name"] == "box"
    assert not stored.exists()
    ctl.wait_ready("echo", 3, timeout=120)
    assert {r["host"] for r in ctl.detail("echo")["replica_list"]} == {"local"}
    assert ctl.predict("echo", {"after": 1}).status_code == 200


async def _router_parts_reach(box: DirectAgent, replica_id: str) -> bool:
    """The router's health check and upstream send the endpoint's headers (the agent's token) and
    verify the agent with its CA; without the token the agent answers 401."""
    url = f"{box.url}/v1/replicas/{replica_id}/proxy"
    headers = (("authorization", f"Bearer {box.config['token']}"),)
    with_token = EndpointState(Endpoint(replica_id, url, "box", headers=headers, ca_cert=str(box.ca)))
    without = EndpointState(Endpoint(replica_id, url, "box", ca_cert=str(box.ca)))
    checker = HealthChecker(lambda: [], timeout=5.0)
    checker.start()
    upstream = Upstream()
    try:
        assert await checker.check(with_token) is True
        assert await checker.check(without) is False
        response = await upstream.open(with_token, "POST", "/", [("authorization", "Bearer client"),
                                                                 ("content-type", "application/json")], b"7")
        assert response.status == 200 and await response.json() == 7
        response.release()
        refused = await upstream.open(without, "POST", "/", [("content-type", "application/json")], b"7")
        assert refused.status == 401
        refused.release()
    finally:
        await checker.close()
        await upstream.close()
    return True


def _predictions_land_on_both(ctl: Controller) -> None:
    where = {r["id"]: r["host"] for r in ctl.detail("echo")["replica_list"]}
    assert set(where.values()) == {"local", "box"}, where
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for i in range(30):
            response = client.post(f"{ctl.url}/echo", json={"i": i})
            assert response.status_code == 200 and response.json() == {"i": i}, response.text
            seen[where[response.headers["x-workbench-replica"]]] += 1
    assert set(seen) == {"local", "box"}, seen

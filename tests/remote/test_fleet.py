"""Remote boxes in the fleet: a real controller (subprocess, its own WORKBENCH_HOME) adds the sshd
boxes over SSH, deploys across local + box0 + box1, survives a dropped sshd and a killed agent,
upgrades and removes (--purge) a box. Process runtime everywhere (fast).

The tests read as a story, but none relies on the one before it: each first brings the fleet to
what it needs (`absent`, `joined`, `echo_spread`), which costs nothing when the previous test left
it so, and repairs it (a purge, an install, a redeploy) when the order is another."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from workbench.remote.layout import Layout

from tests.controller.helpers import Controller, Load, echo_project
from tests.support.real_parts import Workbench, wait_until
from tests.support.sshd import Box, require_sshd, sshd_boxes
from workbench import __version__

pytestmark = [pytest.mark.slow, pytest.mark.sshd]

ECHO = "name: echo\nruntime: process\nreplicas: 3\ncompute: {cpu: 0.1, mem: 64Mi}\n"


@pytest.fixture(scope="module")
def boxes() -> Iterator[list[Box]]:
    """Two boxes of this module's own: its controller installs agents on them and purges them."""
    require_sshd()
    with sshd_boxes(2) as started:
        yield started


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    home = tmp_path_factory.mktemp("fleet") / "home"
    bench = Workbench.create(home)
    try:
        yield bench
    finally:
        bench.cleanup()


@pytest.fixture(scope="module")
def ctl(bench: Workbench, boxes: list[Box]) -> Iterator[Controller]:
    controller = Controller(bench, port=bench.port)
    controller.start()
    try:
        yield controller
    finally:
        for name in ("box0", "box1"):  # whatever a failed test left: remove it through the API
            controller.api("DELETE", f"/v1/hosts/{name}", params={"purge": "true"}, timeout=120)
        controller.stop()
        for box in boxes:
            box.kill_user_processes()


def add_host(ctl: Controller, **body: Any) -> list[dict[str, Any]]:
    events = []
    with httpx.stream("POST", f"{ctl.url}/v1/hosts", headers=ctl.headers, json=body, timeout=600) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    assert events and events[-1]["kind"] in ("done", "error"), events
    return events


def host(ctl: Controller, name: str) -> dict[str, Any]:
    response = ctl.api("GET", f"/v1/hosts/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def replica_hosts(ctl: Controller, api: str = "echo") -> dict[str, str]:
    return {r["id"]: r["host"] for r in ctl.detail(api)["replica_list"]}


# -- what a test needs, set up whatever ran before it -------------------------------------------
def forget_key(bench: Workbench, box: Box) -> None:
    known = bench.home / "known_hosts"
    if known.is_file():
        known.write_text("".join(line + "\n" for line in known.read_text().splitlines()
                                 if not line.startswith(box.known_hosts_name)))


def absent(ctl: Controller, bench: Workbench, box: Box, name: str) -> None:
    """`name` is not in the fleet (removed with --purge if it was: nothing of ours left on the
    box) and the controller does not know the box's host key."""
    if box.process is None:
        box.start()
    if ctl.api("GET", f"/v1/hosts/{name}").status_code == 200:
        removed = ctl.api("DELETE", f"/v1/hosts/{name}", params={"purge": "true"}, timeout=300)
        assert removed.status_code == 200, removed.text
    forget_key(bench, box)


def joined(ctl: Controller, bench: Workbench, box: Box, name: str) -> None:
    """`name` is in the fleet and ready (added, trusting its key, when it is not)."""
    if box.process is None:
        box.start()
    if ctl.api("GET", f"/v1/hosts/{name}").status_code != 200:
        forget_key(bench, box)
        events = add_host(ctl, name=name, target=box.target, identity=str(box.client_key),
                          trust=box.fingerprint())
        assert events[-1]["kind"] == "done", events[-1]
    wait_until(lambda: host(ctl, name)["state"] == "ready", 90, what=f"{name} ready")


def no_echo(ctl: Controller) -> None:
    if ctl.api("GET", "/v1/apis/echo").status_code == 200:
        assert ctl.api("DELETE", "/v1/apis/echo", timeout=120).status_code == 200
        wait_until(lambda: ctl.api("GET", "/v1/apis/echo").status_code == 404, 60, what="echo gone")


def echo_spread(ctl: Controller, bench: Workbench, boxes: list[Box], tmp_path: Path) -> dict[str, str]:
    """box0 and box1 ready, and echo with 3 ready replicas: one on local, box0 and box1 each."""
    joined(ctl, bench, boxes[0], "box0")
    joined(ctl, bench, boxes[1], "box1")
    if ctl.api("GET", "/v1/apis/echo").status_code == 200:
        detail = ctl.detail("echo")
        where = {r["host"] for r in detail["replica_list"] if r["state"] == "ready"}
        settled = detail["replicas"]["ready"] == 3 == len(detail["replica_list"])
        if settled and where == {"local", "box0", "box1"}:
            return replica_hosts(ctl)
        no_echo(ctl)
    assert ctl.deploy(echo_project(tmp_path, yaml=ECHO))[-1]["kind"] == "done"
    ctl.wait_ready("echo", 3, timeout=240)
    where_now = replica_hosts(ctl)
    assert sorted(where_now.values()) == ["box0", "box1", "local"], where_now
    return where_now


# -- refusals (nothing installed) -------------------------------------------------------------
def test_unknown_host_key_refused_until_trusted_cli(ctl: Controller, bench: Workbench,
                                                    boxes: list[Box]) -> None:
    box = boxes[0]
    absent(ctl, bench, box, "box0")
    before = box.home_listing()
    result = bench.run("host", "add", "box0", box.target, "-i", str(box.client_key), check=False)
    assert result.returncode == 1
    assert box.fingerprint() in result.stderr
    assert f"--trust {box.fingerprint()}" in result.stderr
    events = add_host(ctl, name="box0", target=box.target, identity=str(box.client_key))
    trust = [e for e in events if e["kind"] == "trust_required"]
    assert len(trust) == 1 and trust[0]["fingerprint"] == box.fingerprint()
    assert trust[0]["key_type"] == "ssh-ed25519"
    assert events[-1]["kind"] == "error" and "--trust SHA256:" in events[-1]["message"]
    assert box.home_listing() == before
    assert ctl.api("GET", "/v1/hosts/box0").status_code == 404


def test_wrong_user_key_is_a_clear_auth_error(ctl: Controller, boxes: list[Box], tmp_path: Path) -> None:
    box = boxes[1]
    if box.process is None:
        box.start()
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    events = add_host(ctl, name="wrongkey", target=box.target, identity=str(other), trust=box.fingerprint())
    assert events[-1]["kind"] == "error"
    assert "rejected every key" in events[-1]["message"] and "password" in events[-1]["message"]
    assert not any(e["kind"] == "trust_required" for e in events)


def test_bad_input_is_400_before_streaming(ctl: Controller, boxes: list[Box]) -> None:
    box = boxes[0]
    cases = [{"name": "local", "target": box.target}, {"name": "ok", "target": "bad host name!"},
             {"name": "ok", "target": box.target, "identity": "/nonexistent/key"}]
    for body in cases:
        response = ctl.api("POST", "/v1/hosts", json=body)
        assert response.status_code == 400, (body, response.text)
        assert "error" in response.json()
    assert ctl.api("POST", "/v1/hosts", json={"name": "BAD NAME", "target": "x"}).status_code == 422
    assert ctl.api("DELETE", "/v1/hosts/local").status_code == 400
    assert ctl.api("DELETE", "/v1/hosts/nope").status_code == 404
    assert httpx.post(f"{ctl.url}/v1/hosts", json={"name": "a", "target": "b"}).status_code == 401


# -- the flow ---------------------------------------------------------------------------------
def test_add_boxes_then_list_shows_them_ready(ctl: Controller, bench: Workbench, boxes: list[Box]) -> None:
    box0, box1 = boxes
    absent(ctl, bench, box0, "box0")
    absent(ctl, bench, box1, "box1")
    result = bench.run("host", "add", "box0", box0.target, "-i", str(box0.client_key),
                       "--trust", box0.fingerprint())
    assert "preflight" in result.stderr and "install" in result.stderr
    events = add_host(ctl, name="box1", target=box1.target, identity=str(box1.client_key),
                      trust=box1.fingerprint())
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "done", events[-1]
    assert "preflight" in kinds and any(e.get("step") == "wait" for e in events)
    assert events[-1]["result"]["state"] == "ready"
    listed = {h["name"]: h for h in bench.json("host", "list")}  # type: ignore[union-attr]
    assert {"local", "box0", "box1"} <= set(listed)
    for name in ("box0", "box1"):
        assert listed[name]["state"] == "ready" and listed[name]["kind"] == "ssh"
        assert listed[name]["agent_version"] == __version__
    assert {h["name"] for h in bench.json("hosts")} == set(listed)  # type: ignore[union-attr]
    shown = bench.json("host", "show", "box1")
    assert shown["address"] == box1.target  # type: ignore[index]
    duplicate = ctl.api("POST", "/v1/hosts", json={"name": "box1", "target": box1.target})
    assert duplicate.status_code == 400
    db = (bench.home / "controller" / "state.db").read_bytes()
    token = json.loads((box1.home / ".workbench" / "agent" / "config.json").read_text())["token"]
    assert token.encode() not in db


def test_deploy_spreads_over_three_hosts(ctl: Controller, bench: Workbench, boxes: list[Box],
                                         tmp_path: Path) -> None:
    joined(ctl, bench, boxes[0], "box0")
    joined(ctl, bench, boxes[1], "box1")
    no_echo(ctl)
    project = echo_project(tmp_path, yaml=ECHO)
    events = ctl.deploy(project)
    assert events[-1]["kind"] == "done", events
    ctl.wait_ready("echo", 3, timeout=240)
    where = replica_hosts(ctl)
    assert sorted(where.values()) == ["box0", "box1", "local"]
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for i in range(60):
            response = client.post(f"{ctl.url}/echo", json={"i": i})
            assert response.status_code == 200 and response.json() == {"i": i}
            seen[where[response.headers["x-workbench-replica"]]] += 1
    assert set(seen) == {"local", "box0", "box1"}, seen


def test_stopped_sshd_leaves_the_pool_without_failures(ctl: Controller, bench: Workbench, boxes: list[Box],
                                                       tmp_path: Path) -> None:
    echo_spread(ctl, bench, boxes, tmp_path)
    box1 = boxes[1]
    with Load(f"{ctl.url}/echo", clients=2) as load:
        wait_until(lambda: load.ok > 20, 30, what="traffic")
        box1.stop()
        down = wait_until(lambda: (h := host(ctl, "box1"))["state"] == "unreachable" and h, 30,
                          what="box1 unreachable")
        assert down["last_seen"] is not None
        wait_until(lambda: all(r["host"] != "box1" or r["state"] != "ready"
                               for r in ctl.detail("echo")["replica_list"]), 10, what="box1 out of the pool")
        settled = load.ok
        wait_until(lambda: load.ok > settled + 20, 30, what="traffic without box1")
        box1.start()
        wait_until(lambda: host(ctl, "box1")["state"] == "ready", 90, what="box1 ready again")
        wait_until(lambda: sum(r["state"] == "ready" for r in ctl.detail("echo")["replica_list"]
                               if r["host"] == "box1") >= 1, 60, what="box1's replica back")
    assert load.failures == [], load.failures[:5]
    assert ctl.detail("echo")["replicas"]["ready"] >= 3


def test_killed_agent_is_restarted_and_readopts(ctl: Controller, bench: Workbench, boxes: list[Box],
                                                tmp_path: Path) -> None:
    echo_spread(ctl, bench, boxes, tmp_path)
    box0 = boxes[0]
    before = {i for i, h in replica_hosts(ctl).items() if h == "box0"}
    assert before
    pidfile = Layout.for_home(str(box0.home)).root / "agent.pid"
    pid = int(Path(str(pidfile)).read_text().strip())
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: Path(str(pidfile)).is_file() and Path(str(pidfile)).read_text().strip() != str(pid),
               60, what="the agent restarted over SSH")
    wait_until(lambda: host(ctl, "box0")["state"] == "ready", 60, what="box0 ready")
    wait_until(lambda: {i for i, h in replica_hosts(ctl).items() if h == "box0"} == before, 60,
               what="the same replicas re-adopted")
    events = ctl.api("GET", "/v1/events", params={"limit": 200}).json()
    assert any("restarted it over SSH" in e["message"] for e in events)


def test_upgrade_replaces_an_older_agent(ctl: Controller, bench: Workbench, boxes: list[Box]) -> None:
    box1 = boxes[1]
    joined(ctl, bench, box1, "box1")
    marker = Path(str(Layout.for_home(str(box1.home)).marker))
    marker.write_text(json.dumps({"version": "0.0.1", "build": "old"}))
    os.chown(marker, box1.uid, -1)
    bench.run("host", "upgrade", "box1")
    assert json.loads(marker.read_text())["version"] == __version__
    wait_until(lambda: host(ctl, "box1")["state"] == "ready", 60, what="box1 ready after upgrade")


def test_remove_purge_moves_replicas_and_cleans_the_box(ctl: Controller, bench: Workbench,
                                                        boxes: list[Box], tmp_path: Path) -> None:
    echo_spread(ctl, bench, boxes, tmp_path)
    box0 = boxes[0]
    out = bench.json("host", "remove", "box0", "--purge", "--yes")
    assert out["purged"] is True and out["moved_replicas"] == 1  # type: ignore[index]
    assert ".workbench" not in {p.split("/")[0] for p in box0.home_listing()}
    assert "box0" not in {r["host"] for r in ctl.detail("echo")["replica_list"]}
    assert ctl.api("GET", "/v1/hosts/box0").status_code == 404
    wait_until(lambda: ctl.detail("echo")["replicas"]["ready"] == 3, 120, what="3 ready replicas again")


def test_changed_host_key_refused_and_nothing_runs(ctl: Controller, bench: Workbench,
                                                   boxes: list[Box]) -> None:
    box0 = boxes[0]
    absent(ctl, bench, box0, "box0")  # not in the fleet; its recorded key is now replaced by another one
    known = bench.home / "known_hosts"
    fake = bench.home / "fake_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {fake}")
    kind, blob = fake.with_suffix(".pub").read_text().split()[:2]
    lines = known.read_text().splitlines() if known.is_file() else []
    known.write_text("\n".join([*lines, f"{box0.known_hosts_name} {kind} {blob}", ""]))
    before = box0.home_listing()
    events = add_host(ctl, name="box0", target=box0.target, identity=str(box0.client_key),
                      trust=box0.fingerprint())
    assert events[-1]["kind"] == "error"
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in events[-1]["message"]
    assert "Nothing was run" in events[-1]["message"]
    assert box0.home_listing() == before
    assert ctl.api("GET", "/v1/hosts/box0").status_code == 404


def test_host_added_after_the_deploy_gets_the_build_then_replicas(ctl: Controller, bench: Workbench,
                                                                   boxes: list[Box], tmp_path: Path) -> None:
    """box0, purged and removed, is added back: it has no bundle of echo. The scheduler picks it
    for the next replica; its agent answers 404, the controller builds echo there in the
    background and places that replica elsewhere meanwhile; the next one lands on box0."""
    box0 = boxes[0]
    joined(ctl, bench, boxes[1], "box1")
    absent(ctl, bench, box0, "box0")  # purged: no bundle of echo there; a wrong key planted: gone
    if ctl.api("GET", "/v1/apis/echo").status_code != 200:
        assert ctl.deploy(echo_project(tmp_path, yaml=ECHO))[-1]["kind"] == "done"
    assert ctl.api("POST", "/v1/apis/echo/scale", json={"replicas": 3}).status_code == 200
    ctl.wait_ready("echo", 3, timeout=120)
    events = add_host(ctl, name="box0", target=box0.target, identity=str(box0.client_key),
                      trust=box0.fingerprint())
    assert events[-1]["kind"] == "done", events[-1]
    assert ctl.api("POST", "/v1/apis/echo/scale", json={"replicas": 4}).status_code == 200

    def messages() -> list[str]:
        answer = ctl.api("GET", "/v1/events", params={"api": "echo", "limit": 100})
        return [event["message"] for event in answer.json()]

    wait_until(lambda: any("box0 joined after the deploy" in m for m in messages()), 60,
               what="the catch-up build to start")
    ctl.wait_ready("echo", 4, timeout=120)  # the 4th replica went elsewhere while box0 builds
    wait_until(lambda: any("built" in m and "on box0" in m for m in messages()), 240,
               what="the catch-up build on box0")
    assert ctl.api("POST", "/v1/apis/echo/scale", json={"replicas": 5}).status_code == 200
    ctl.wait_ready("echo", 5, timeout=120)
    where = replica_hosts(ctl)
    assert "box0" in where.values(), where
    with httpx.Client(timeout=30) as client:
        hosts = {where.get(client.post(f"{ctl.url}/echo", json={"i": i}).headers["x-workbench-replica"])
                 for i in range(40)}
    assert "box0" in hosts, hosts

"""Model weights across a fleet, end to end: a real controller, the workstation's own host and a
real sshd box. Two APIs (three replicas) share one generated 200 MB workstation model: each host
keeps one copy, the box gets the model's bytes once over its SSH link (the agent's API through
the tunnel), the built bundles do not
contain it, and every replica sees it read-only at WORKBENCH_MODEL_DIR. Then `workbench model
list/rm`, `host set --cache-limit`, and a pre-warm of a hub repo (`model pull`, fetched by the box
itself from a local hub); a dropped link; a file that changes on its way (sent once more, then
refused); `host add --cache-limit`; and a box the hub is firewalled off from (the workstation's
host fetches the repo and sends it on)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controller.helpers import Controller
from tests.support.fake_hub import FakeHub
from tests.support.real_parts import Workbench, wait_until
from tests.support.sshd import Box

pytestmark = pytest.mark.slow

MODEL_BYTES = 200 * 10**6
CONFIG = b'{"model_type": "generated"}'

PREDICTOR = '''
import hashlib, os


class Predictor:
    def __init__(self, config):
        self.root = os.environ["WORKBENCH_MODEL_DIR"]
        self.config = open(os.path.join(self.root, "config.json")).read()

    def predict(self, payload):
        try:
            with open(os.path.join(self.root, "config.json"), "a") as handle:
                handle.write("changed")
            wrote = "wrote"
        except OSError as error:
            wrote = f"refused errno {error.errno}"
        try:
            open(os.path.join(self.root, "new-file"), "w").close()
            created = "created"
        except OSError as error:
            created = f"refused errno {error.errno}"
        return {"dir": self.root, "config": self.config, "write": wrote, "create": created,
                "size": os.path.getsize(os.path.join(self.root, "model.bin")), "uid": os.getuid()}
'''


def project(root: Path, name: str, replicas: int, source: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictor.py").write_text(PREDICTOR)
    (folder / "workbench.yaml").write_text(
        f"name: {name}\nruntime: process\nreplicas: {replicas}\ncompute: {{cpu: 0.1, mem: 64Mi}}\n"
        f"model:\n  name: generated\n  source: {source}\n")
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated model, once per module: 200 MB of random bytes and a config."""
    folder = tmp_path_factory.mktemp("model") / "weights"
    folder.mkdir()
    with (folder / "model.bin").open("wb") as out:
        for _ in range(MODEL_BYTES // 10**7):
            out.write(os.urandom(10**7))
    (folder / "config.json").write_bytes(CONFIG)
    return folder


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    bench = Workbench.create(tmp_path_factory.mktemp("models") / "home")
    try:
        yield bench
    finally:
        bench.cleanup()


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()
    fake.add("org/tiny", {"config.json": b'{"model_type": "tiny"}', "model.safetensors": os.urandom(1 << 21)})
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def ctl(bench: Workbench, boxes: list[Box], hub: FakeHub) -> Iterator[Controller]:
    bench.env["HF_ENDPOINT"] = hub.url
    controller = Controller(bench, port=bench.port)
    controller.start()
    try:
        box = boxes[0]
        events = stream(controller, "/v1/hosts", name="box0", target=box.target, identity=str(box.client_key),
                        trust=box.fingerprint())
        assert events[-1]["kind"] == "done", events[-3:]
        yield controller
    finally:
        for api in ("alpha", "beta"):
            controller.api("DELETE", f"/v1/apis/{api}", timeout=60)
        controller.api("DELETE", "/v1/hosts/box0", params={"purge": "true"}, timeout=120)
        controller.stop()
        boxes[0].kill_user_processes()


def stream(ctl: Controller, path: str, **body: Any) -> list[dict[str, Any]]:
    events = []
    with httpx.stream("POST", f"{ctl.url}{path}", headers=ctl.headers, json=body, timeout=600) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    return events


def caches(ctl: Controller) -> dict[str, dict[str, Any]]:
    response = ctl.api("GET", "/v1/models")
    assert response.status_code == 200, response.text
    return {h["host"]: h["cache"] for h in response.json()}


def test_two_apis_three_replicas_two_hosts_one_copy_each(ctl: Controller, bench: Workbench, boxes: list[Box],
                                                         weights: Path, tmp_path: Path) -> None:
    alpha = project(tmp_path, "alpha", 2, str(weights))
    beta = project(tmp_path, "beta", 1, str(weights))
    # the weights inside alpha's project folder too: they stay out of its bundle
    (alpha / "weights").mkdir()
    os.link(weights / "model.bin", alpha / "weights" / "model.bin")
    (alpha / "weights" / "config.json").write_bytes(CONFIG)
    (alpha / "workbench.yaml").write_text((alpha / "workbench.yaml").read_text().replace(str(weights),
                                                                                         "./weights"))
    seen: list[str] = []
    deployed = threading.Event()

    def watch() -> None:  # what `workbench get` and the TUI show while the weights travel
        while not deployed.is_set():
            response = ctl.api("GET", "/v1/apis/alpha")
            if response.status_code == 200 and response.json().get("message"):
                seen.append(response.json()["message"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = ctl.deploy(alpha)
    deployed.set()
    watcher.join(10)
    assert first[-1]["kind"] == "done", first[-3:]
    progress = [m for m in seen + [e.get("message", "") for e in first] if "waiting for weights" in m]
    assert progress and any("generated → box0:" in m and " MB" in m for m in progress), (seen, first)
    assert any("model generated" in e.get("message", "") for e in first)
    second = ctl.deploy(beta)
    assert second[-1]["kind"] == "done", second[-3:]
    ctl.wait_ready("alpha", 2, timeout=300)
    ctl.wait_ready("beta", 1, timeout=300)
    hosts = {r["host"] for api in ("alpha", "beta") for r in ctl.detail(api)["replica_list"]}
    assert hosts == {"local", "box0"}

    # one copy per host: one version, its two files, in each cache
    found = caches(ctl)
    for name in ("local", "box0"):
        cache = found[name]
        assert [m["name"] for m in cache["models"]] == ["generated"], cache
        model = cache["models"][0]
        assert model["size_bytes"] == MODEL_BYTES + len(CONFIG) and model["files"] == 2
        assert cache["used_bytes"] == MODEL_BYTES + len(CONFIG)
    box_blobs = boxes[0].home / ".workbench" / "agent" / "models" / "blobs"
    assert sorted(p.stat().st_size for p in box_blobs.iterdir()) == [len(CONFIG), MODEL_BYTES]
    every_user = {api for host in found.values() for m in host["models"] for api in m["used_by"]}
    assert every_user == {"alpha", "beta"}

    # the box got the bytes once, over its SSH link; the workstation's host got them locally
    events = ctl.api("GET", "/v1/events", params={"limit": 1000}).json()
    arrived = [e for e in events if e.get("data", {}).get("host") == "box0" and "sent" in e.get("data", {})]
    assert len(arrived) == 1, arrived
    assert arrived[0]["data"]["sent"] == MODEL_BYTES + len(CONFIG)
    assert arrived[0]["data"]["via"] == "agent API"
    assert any("waits for model" in e["message"] for e in events)

    # the bundles (the process runtime's images) do not hold the weights
    for root in (bench.agent_home / "bundles", boxes[0].home / ".workbench" / "agent" / "bundles"):
        sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()]
        assert sizes and max(sizes) < MODEL_BYTES // 10, root
        assert not [p for p in root.rglob("model.bin")], root

    # every replica sees the model at WORKBENCH_MODEL_DIR; the box's (not root) cannot change it
    answers = {}
    for _ in range(40):
        for api in ("alpha", "beta"):
            response = ctl.predict(api, {})
            assert response.status_code == 200, response.text
            answers[response.headers["x-workbench-replica"]] = response.json()
    assert len(answers) == 3
    for answer in answers.values():
        assert answer["config"] == CONFIG.decode() and answer["size"] == MODEL_BYTES
        assert "/models/trees/" in answer["dir"]
        if answer["uid"] != 0:
            assert answer["write"].startswith("refused") and answer["create"].startswith("refused"), answer
    assert any(a["uid"] != 0 for a in answers.values())
    assert (weights / "config.json").read_bytes() == CONFIG  # nothing wrote through to the source


def test_model_list_json_and_rm_refused_while_in_use(ctl: Controller, bench: Workbench) -> None:
    listed = bench.json("model", "list")
    assert isinstance(listed, list)
    by_host = {h["host"]: h for h in listed}
    assert {"local", "box0"} <= set(by_host)
    model = by_host["box0"]["cache"]["models"][0]
    assert model["name"] == "generated" and sorted(model["used_by"]) and model["last_used"]
    table = bench.run("model", "list").stdout
    assert "generated" in table and "box0" in table and "200.0 MB" in table
    refused = bench.run("model", "rm", "generated", "--host", "box0", check=False)
    assert refused.returncode == 1 and "used by a replica" in refused.stderr


def test_cache_limit_refuses_a_pull_that_cannot_fit(ctl: Controller, bench: Workbench, hub: FakeHub) -> None:
    bad = bench.run("host", "set", "box0", "--cache-limit", "lots", check=False)
    assert bad.returncode == 2 and "--cache-limit" in bad.stderr
    bench.run("host", "set", "box0", "--cache-limit", "201M")
    assert caches(ctl)["box0"]["limit_bytes"] == 201 * 10**6
    refused = bench.run("model", "pull", "hf://org/tiny", "--host", "box0", check=False)
    assert refused.returncode != 0 and "cache-limit" in refused.stderr, refused.stderr
    assert [m["name"] for m in caches(ctl)["box0"]["models"]] == ["generated"]
    assert not hub.served  # refused before anything was fetched


def test_pull_prewarms_a_box_that_fetches_the_hub_itself(ctl: Controller, bench: Workbench,
                                                         hub: FakeHub, boxes: list[Box]) -> None:
    bench.run("host", "set", "box0", "--cache-limit", "none")
    result = bench.run("model", "pull", "hf://org/tiny", "--host", "box0", "--json")
    done = json.loads(result.stdout)
    assert done["kind"] == "done" and "box0" in done["message"]
    assert hub.served["org/tiny/model.safetensors"] == 1 << 21  # the box fetched it, once
    names = sorted(m["name"] for m in caches(ctl)["box0"]["models"])
    assert names == ["generated", "tiny"]
    tree = next(m for m in caches(ctl)["box0"]["models"] if m["name"] == "tiny")["path"]
    assert Path(tree, "hub", "models--org--tiny", "refs", "main").read_text() == hub.repos["org/tiny"].commit
    removed = json.loads(bench.run("model", "rm", "tiny", "--host", "box0", "--json").stdout)
    assert [r["name"] for r in removed["removed"]] == ["tiny"]
    wait_until(lambda: "tiny" not in {m["name"] for m in caches(ctl)["box0"]["models"]}, 10,
               what="tiny to leave box0's cache")


def test_a_link_dropped_mid_transfer_resumes_without_resending(ctl: Controller, boxes: list[Box],
                                                               tmp_path: Path) -> None:
    box = boxes[0]
    folder = tmp_path / "second"
    folder.mkdir()
    data = os.urandom(MODEL_BYTES)
    (folder / "second.bin").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    partial = box.home / ".workbench" / "agent" / "models" / "partial" / f"{sha}.part"
    events: list[dict[str, Any]] = []
    sizes: list[int] = []
    finished = threading.Event()

    def watch() -> None:  # the box's partial copy, as it grows (a resend from 0 would shrink it)
        while not finished.is_set():
            with contextlib.suppress(OSError):
                sizes.append(partial.stat().st_size)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pulling = threading.Thread(target=lambda: events.extend(
        stream(ctl, "/v1/models/pulls", source=str(folder), host="box0", name="second")))
    pulling.start()
    try:
        arrived = wait_until(lambda: partial.is_file() and partial.stat().st_size >= 60 * 10**6 and
                             partial.stat().st_size, 60, interval=0.01, what="60 MB of the model on the box")
        box.stop()
        assert partial.stat().st_size >= arrived
        time.sleep(1.0)
    finally:
        if box.process is None:
            box.start()
    pulling.join(240)
    finished.set()
    assert not pulling.is_alive()
    assert sizes and all(later >= earlier for earlier, later in itertools.pairwise(sizes))
    assert sizes[-1] > arrived  # the rest arrived after the drop, appended to what was there
    assert events[-1]["kind"] == "done", events[-3:]
    report = caches(ctl)["box0"]
    second = next(m for m in report["models"] if m["name"] == "second")
    assert second["size_bytes"] == MODEL_BYTES
    blob = box.home / ".workbench" / "agent" / "models" / "blobs" / sha
    assert blob.stat().st_size == MODEL_BYTES and not partial.exists()
    logged = ctl.api("GET", "/v1/events", params={"limit": 1000}).json()
    done = [e for e in logged if e.get("data", {}).get("model") == second["id"] and "sent" in e["data"]]
    assert len(done) == 1, done
    # sent: what arrived once, plus what was on its way when the link dropped (never what arrived)
    assert MODEL_BYTES <= done[0]["data"]["sent"] < 2 * MODEL_BYTES, done[0]["data"]
    assert ctl.api("DELETE", "/v1/models/second", params={"host": "box0"}).status_code == 200


def watch_partial(partial: Path, on_size: Any, finished: threading.Event) -> threading.Thread:
    """Call `on_size(size or None)` with the box's partial copy's size (None: not there) until done."""
    def watch() -> None:
        while not finished.is_set():
            try:
                on_size(partial.stat().st_size)
            except OSError:
                on_size(None)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def flip_tail(path: Path) -> None:
    """Change a file's last bytes in place (the same size): not the file its digest named."""
    with path.open("r+b") as handle:
        handle.seek(-16, os.SEEK_END)
        tail = handle.read(16)
        handle.seek(-16, os.SEEK_END)
        handle.write(bytes(b ^ 0xFF for b in tail))


@pytest.mark.parametrize("lasting", [False, True], ids=["changed-once", "changed-for-good"])
def test_a_file_changed_on_the_way_is_sent_once_more_then_refused(ctl: Controller, boxes: list[Box],
                                                                 tmp_path: Path, lasting: bool) -> None:
    """The workstation's file changes after its digest (the box checks what arrives): the box
    discards it, the workstation sends it once more — fine if the file is right again, else a clear
    error, with nothing of it in the box's cache."""
    box = boxes[0]
    name = f"changing-{int(lasting)}"
    folder = tmp_path / name
    folder.mkdir()
    data = os.urandom(40 * 10**6)
    source = folder / "weights.bin"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    models = box.home / ".workbench" / "agent" / "models"
    partial = models / "partial" / f"{sha}.part"
    sends = 0  # 1: the first send is under way (the file changed under it); 2: it was discarded
    largest = 0
    finished = threading.Event()

    def on_size(size: int | None) -> None:
        nonlocal sends, largest
        if sends == 0 and size:
            sends = 1
            flip_tail(source)
        elif sends == 1 and (size is None or size < largest):
            sends = 2
            if not lasting:
                source.write_bytes(data)  # right again for the second send
        if sends == 1 and size:
            largest = max(largest, size)

    watcher = watch_partial(partial, on_size, finished)
    try:
        events = stream(ctl, "/v1/models/pulls", source=str(folder), host="box0", name=name)
    finally:
        finished.set()
        watcher.join(5)
    assert sends == 2, (sends, events[-3:])
    report = caches(ctl)["box0"]
    if not lasting:
        assert events[-1]["kind"] == "done", events[-3:]
        assert (models / "blobs" / sha).read_bytes() == data and not partial.exists()
        assert ctl.api("DELETE", f"/v1/models/{name}", params={"host": "box0"}).status_code == 200
        return
    assert events[-1]["kind"] == "error", events[-3:]
    message = events[-1]["message"]
    assert "weights.bin arrived twice with another sha256" in message, message
    assert "changing on this machine" in message, message
    assert name not in {m["name"] for m in report["models"]}
    assert not (models / "blobs" / sha).exists() and not partial.exists()


def test_host_add_takes_a_cache_limit(ctl: Controller, bench: Workbench, boxes: list[Box]) -> None:
    box = boxes[1]
    target = ["host", "add", "box1", box.target, "--identity", str(box.client_key),
              "--trust", box.fingerprint()]
    for bad, why in (("lots", "--cache-limit"), ("1K", "too small"), ("none", "--cache-limit")):
        refused = bench.run(*target, "--cache-limit", bad, check=False)
        assert refused.returncode == 2 and why in refused.stderr, (bad, refused.stderr)
        assert "box1" not in {h["name"] for h in ctl.api("GET", "/v1/hosts").json()}
    assert not (box.home / ".workbench").exists()  # nothing was installed either
    try:
        bench.run(*target, "--cache-limit", "300Mi")
        assert caches(ctl)["box1"]["limit_bytes"] == 300 * 2**20
    finally:
        ctl.api("DELETE", "/v1/hosts/box1", params={"purge": "true"}, timeout=120)
        box.kill_user_processes()


@contextlib.contextmanager
def unreachable_for(box: Box, port: int) -> Iterator[None]:
    """The box's user cannot connect to 127.0.0.1:`port` (a firewall rule for its uid only)."""
    rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port), "-m", "owner", "--uid-owner",
            str(box.uid), "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True, capture_output=True)


def test_a_box_that_cannot_reach_the_hub_gets_the_repo_through_the_workstation(
        ctl: Controller, bench: Workbench, hub: FakeHub, boxes: list[Box]) -> None:
    weights = os.urandom(3 * 10**6)
    repo = hub.add("org/relayed", {"config.json": b'{"model_type": "relayed"}',
                                   "model.safetensors": weights})
    port = int(hub.url.rsplit(":", 1)[1])
    with unreachable_for(boxes[0], port):
        # the rule holds: the box's own user is refused, the workstation is not
        probe = subprocess.run(["runuser", "-u", boxes[0].user, "--", "/usr/bin/python3", "-c",
                                f"import socket; socket.create_connection(('127.0.0.1', {port}), 5)"],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode != 0 and "refused" in probe.stderr.lower(), probe
        result = bench.run("model", "pull", "hf://org/relayed", "--host", "box0", "--json")
    done = json.loads(result.stdout)
    assert done["kind"] == "done" and "box0" in done["message"], done
    # the workstation's host fetched it once from the hub, and sent it on over the box's link
    assert hub.served["org/relayed/model.safetensors"] == len(weights)
    found = caches(ctl)
    assert "relayed" in {m["name"] for m in found["local"]["models"]}
    relayed = next(m for m in found["box0"]["models"] if m["name"] == "relayed")
    assert relayed["size_bytes"] == len(weights) + len(repo.files["config.json"])
    tree = Path(relayed["path"])
    assert Path(tree, "hub", "models--org--relayed", "refs", "main").read_text() == repo.commit
    blob = boxes[0].home / ".workbench" / "agent" / "models" / "blobs" / hashlib.sha256(weights).hexdigest()
    assert blob.read_bytes() == weights
    logged = ctl.api("GET", "/v1/events", params={"limit": 1000}).json()
    sent = [e["data"] for e in logged if e.get("data", {}).get("model") == relayed["id"]
            and e["data"].get("host") == "box0" and "sent" in e["data"]]
    assert len(sent) == 1 and sent[0]["via"].startswith("through local"), sent
    assert sent[0]["sent"] == relayed["size_bytes"]
    for host in ("box0", "local"):
        assert ctl.api("DELETE", "/v1/models/relayed", params={"host": host}).status_code == 200

"""Model weights: getting a file from the workstation to a box (scp vs SFTP on the box's SSH
connection vs the agent's API through its tunnel, same sshd, same file), and what a model costs a
replica's start once it is in the host's cache (a process replica with and without a 1 GB model),
and today's way against it (a copy of examples/echo with the weights in its project folder, so in
its build context and image, built on the box, vs the same project with the weights as
`model: {source: ./weights}`, built without them + the weights sent to the box's cache), side by
side in one run.

    .venv/bin/python bench/model_cache.py [--size-mb 1024] [--starts 3] [--only-build] [--write]

(--only-build: only the build-and-ship rows, printed; --write needs the whole run.)

Needs root (it starts a throwaway sshd box with its own user, like the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.remote.blobs import sftp_append  # noqa: E402
from workbench.remote.box import SSHBox  # noqa: E402
from workbench.remote.hostkeys import KnownHosts  # noqa: E402
from workbench.remote.tunnel import DEFAULT_TUNNEL  # noqa: E402

from bench.report import write_section  # noqa: E402
from bench.ship_images import build_on_box  # noqa: E402
from tests.agent.helpers import Agent, bundle_context, read_events, wait_state  # noqa: E402
from tests.support.sshd import Box, sshd_boxes, sshd_missing  # noqa: E402
from workbench.clients.agent import AgentClient, AsyncAgentClient  # noqa: E402
from workbench.controller.build import plan_artifact  # noqa: E402
from workbench.spec.loader import load_specs  # noqa: E402
from workbench.weights.digests import Digests  # noqa: E402
from workbench.weights.resolve import PlannedModel, resolve, version_id  # noqa: E402
from workbench.weights.transfer import AgentApiSender, push  # noqa: E402
from workbench.wire.model_cache import ModelFile, ModelManifest, ModelMount  # noqa: E402

WITH = "with the model (in the cache)"
IN_IMAGE = "today's way: weights in the project folder (build context and image)"
AS_MODEL = "`model: {source: ./weights}` (out of the context, sent to the cache)"


def weights_file(folder: Path, size_mb: int) -> tuple[Path, str]:
    path = folder / "model.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size_mb):
            block = os.urandom(1 << 20)
            out.write(block)
            digest.update(block)
    return path, digest.hexdigest()


def timed(work) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def transfers(box: Box, source: Path, sha: str, folder: Path) -> dict[str, float]:
    """Seconds for each way to put `source` on the box."""
    known = folder / "known_hosts"
    known.write_text(box.known_hosts_line() + "\n")
    seconds: dict[str, float] = {}
    target = f"{box.user}@{box.address}:scp-copy.bin"
    scp = ["scp", "-q", "-i", str(box.client_key), "-P", str(box.port), "-o", f"UserKnownHostsFile={known}",
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", str(source), target]
    seconds["scp (OpenSSH)"] = timed(lambda: subprocess.run(scp, check=True))
    (box.home / "scp-copy.bin").unlink()
    tunnel = DEFAULT_TUNNEL
    host = SSHBox(box.target, identity=box.client_key, known_hosts=KnownHosts([known], folder / "wb-known"),
                  ssh_config=folder / "no-config").connect()
    try:
        host.install()
        client = AgentClient(host.agent_url, host.agent_token, timeout=600)
        cache = box.home / ".workbench" / "agent" / "models"
        partial = cache / "partial" / f"{sha}.part"
        blob = cache / "blobs" / sha
        size = source.stat().st_size
        client.models()  # the cache's folders exist

        def by_sftp() -> None:
            sftp_append(host.ssh, source, str(partial), lambda count: None)
            assert client.finish_blob(sha, size).complete

        seconds["SFTP on the box's connection + sha256 check"] = timed(by_sftp)
        blob.unlink()

        def by_agent() -> None:
            assert client.send_blob(sha, size, source).complete

        seconds[f"agent API through the {tunnel} tunnel (checked as it arrives)"] = timed(by_agent)
        blob.unlink()
        client.close()
        if tunnel == "openssh":
            return seconds
        other = SSHBox(box.target, identity=box.client_key, known_hosts=KnownHosts([known], folder / "wb-k2"),
                       ssh_config=folder / "no-config", tunnel="openssh").connect()
        try:
            other.install()
            client = AgentClient(other.agent_url, other.agent_token, timeout=600)
            seconds["agent API through an OpenSSH `ssh -L` tunnel"] = timed(by_agent)
            blob.unlink()
            client.close()
        finally:
            other.close()
        host.remove(purge=True)
    finally:
        host.close()
    return seconds


def echo_project(folder: Path, name: str, source: Path, as_model: bool) -> Path:
    """A copy of examples/echo with `source` (hard-linked) at weights/model.bin; as a model of the
    API, or just a file of the project."""
    project = folder / name
    shutil.copytree(REPO / "examples" / "echo", project)
    (project / "weights").mkdir()
    os.link(source, project / "weights" / "model.bin")
    if as_model:
        spec = project / "workbench.yaml"
        spec.write_text(spec.read_text() + "model:\n  source: ./weights\n")
    return project


def build_and_ship(box: Box, source: Path, folder: Path) -> dict[str, dict[str, float]]:
    """For each way, seconds to get the API with its weights onto the box (Docker runtime, built
    cold by the box's agent): plan (hashing the files), build (context upload + build), and for
    the model, its transfer to the box's cache."""
    known = folder / "known_hosts"
    known.write_text(box.known_hosts_line() + "\n")
    remote = SSHBox(box.target, identity=box.client_key, known_hosts=KnownHosts([known], folder / "wb-k3"),
                    ssh_config=folder / "no-config").connect()
    rows: dict[str, dict[str, float]] = {}
    try:
        remote.install()
        warm_up = plan_artifact(load_specs(REPO / "examples" / "echo")[0], "docker", None)
        build_on_box(remote, warm_up)  # the base layers in Docker's cache for both ways
        for label, as_model in ((IN_IMAGE, False), (AS_MODEL, True)):
            project = echo_project(folder, "in-image" if not as_model else "as-model", source, as_model)
            started = time.perf_counter()
            loaded = load_specs(project)[0]
            models = [resolve(spec, project, digests=Digests()) for spec in loaded.spec.model_specs]
            plan = plan_artifact(loaded, "docker", None, models)
            row = {"plan": time.perf_counter() - started, "build": build_on_box(remote, plan)}
            for model in models:

                async def send(model: PlannedModel = model) -> int:
                    async with AsyncAgentClient(remote.agent_url, remote.agent_token, timeout=900) as client:
                        return await push(client, lambda _: AgentApiSender(client), model.manifest,
                                          model.local_file)

                started = time.perf_counter()
                assert asyncio.run(send()) == source.stat().st_size
                row["transfer"] = time.perf_counter() - started
            rows[label] = row
            subprocess.run(["docker", "rmi", "-f", plan.artifact], capture_output=True)
        # not purge: the cache's model trees are read-only, `rm -rf` of ~/.workbench stops at them
        # (the throwaway box's folder goes with it)
        remote.remove()
    finally:
        remote.close()
    return rows


def build_rows(shipped: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for label, row in shipped.items():
        transfer = f"{row['transfer']:.1f} s" if "transfer" in row else "—"
        lines.append(f"| {label} | {row['plan']:.1f} s | {row['build']:.1f} s | {transfer} | "
                     f"**{sum(row.values()):.1f} s** |")
    return lines


def starts(folder: Path, source: Path, sha: str, count: int) -> dict[str, list[float]]:
    """Seconds from POST /v1/replicas to ready for a process replica, with and without the model
    (already in the cache), `count` times each, alternating."""
    agent = Agent(folder / "agent-home").start()
    try:
        with agent.client(timeout=600) as client:
            artifact, tar = bundle_context(requirements="")
            built = read_events(client.post("/v1/builds", params={"runtime": "process", "artifact": artifact},
                                            content=tar))
            assert built[-1]["kind"] == "done", built[-3:]
            item = ModelFile(path="model.bin", size=source.stat().st_size, sha256=sha)
            identity = {"kind": "files", "files": [[item.path, item.size, item.sha256]]}
            manifest = ModelManifest(id=version_id(identity), name="bench", source="./weights", files=[item])
            api = AgentClient(agent.url, agent.config["token"], timeout=600)
            api.prepare_model(manifest)
            api.send_blob(sha, item.size or 0, source)
            api.commit_model(manifest)
            api.close()
            mounts = [ModelMount.of(manifest, "/models/bench").model_dump()]
            seconds: dict[str, list[float]] = {"without a model": [], WITH: []}
            for _ in range(count):
                for label, models in (("without a model", None), (WITH, mounts)):
                    request = {"api": "bench", "spec_hash": "s", "runtime": "process", "artifact": artifact,
                               "runtime_config": {"api": "bench", "project_dir": "/ignored",
                                                  "serving": {"graceful_shutdown": 1}}, "env": {}}
                    if models:
                        request["models"] = models
                    started = time.perf_counter()
                    created = client.post("/v1/replicas", json=request)
                    assert created.status_code == 201, created.text
                    wait_state(client, created.json()["id"], ["ready"], 120)
                    seconds[label].append(time.perf_counter() - started)
                    client.delete(f"/v1/replicas/{created.json()['id']}", params={"grace": 0})
            return seconds
    finally:
        agent.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--only-build", action="store_true",
                        help="only the build-and-ship rows (today's way vs the model cache)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.only_build and args.write:
        parser.error("--write needs the whole run (drop --only-build)")
    if (reason := sshd_missing()) is not None:
        raise SystemExit(f"bench/model_cache.py starts an sshd box: {reason}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        source, sha = weights_file(folder, args.size_mb)
        with sshd_boxes(1) as [box]:
            moved = {} if args.only_build else transfers(box, source, sha, folder)
            shipped = build_and_ship(box, source, folder)
        started = {} if args.only_build else starts(folder, source, sha, args.starts)
    header = "| way | plan (hash files) | build on the box | weights to the cache | total |"
    shipping = build_rows(shipped)
    for line in [header, *shipping]:
        print(line)
    if args.only_build:
        return
    size = args.size_mb * (1 << 20)
    scp = moved["scp (OpenSSH)"]
    rows = [f"| {way} | {s:.2f} s | {size / s / 1e6:.0f} MB/s | {scp / s:.2f} x |"
            for way, s in moved.items()]
    for line in rows:
        print(line)
    medians = {label: statistics.median(values) for label, values in started.items()}
    for label, value in medians.items():
        print(f"replica start {label}: median {value:.2f} s of {started[label]}")
    extra = medians[WITH] - medians["without a model"]
    print(f"a model in the cache adds {extra:+.2f} s to a replica's start")
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        body = "\n".join([
            "## Model weights: workstation → box, and a replica's start (`bench/model_cache.py`)", "",
            f"One {args.size_mb} MiB file of random bytes, sent each way to the same throwaway sshd box "
            f"on this machine ({machine}), one after the other in one run; measured "
            f"{datetime.now(UTC):%Y-%m-%d}. Workbench's own ways include the sha256 check on the box "
            "that files the copy in its cache (scp checks nothing).", "",
            "| way | time | throughput | vs scp (time of scp / time) |", "|---|---|---|---|", *rows, "",
            f"A process replica's start (POST /v1/replicas → ready, median of {args.starts}), the model "
            "already in the host's cache (a second replica of an API: nothing is copied, the replica "
            "gets the cache's read-only path):", "",
            "| replica | median start |", "|---|---|",
            *[f"| {label} | {value:.2f} s |" for label, value in medians.items()], "",
            f"The model adds **{extra:+.2f} s** to a start (goal: ≤ 1 s).", "",
            f"Build and ship to the box against today's way: a copy of examples/echo (Docker runtime) "
            f"with the same {args.size_mb} MiB file at weights/model.bin, once inside the project folder "
            "(so in the build context and the image), once as `model: {source: ./weights}` (left out of "
            "the context, sent to the box's model cache through the agent's API). Each built cold by the "
            "box's agent (the context uploaded through the tunnel; the base layers warmed by a build of "
            "the plain example first), once each; plan = loading the spec "
            "and hashing the project's files (and the model's).", "",
            header, "|---|---|---|---|---|", *shipping, "",
            "The box shares this machine's Docker engine, so no base image is pulled; a redeploy with "
            "the same weights sends nothing with a model (the cache has them), while today's way "
            "rebuilds and re-uploads the context whenever any file of the project changes.",
        ])
        write_section("model_cache", body)


if __name__ == "__main__":
    main()

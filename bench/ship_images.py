"""Build where it runs vs build once and ship, for examples/echo on one sshd box (Docker runtime).

  build: the context is uploaded through the SSH tunnel to the box's agent, which runs the build
         (what `workbench deploy` does for every host a replica goes to);
  ship:  `docker save IMAGE | ssh box docker load` of the image built on the workstation.

    .venv/bin/python bench/ship_images.py [--runs 3] [--write]

Needs root (a throwaway sshd box with its own user, like the tests) and a Docker engine the box
user may use. On this test machine the box and the workstation share ONE Docker engine: the build
is made cold by removing the image first; `docker load` finds the layers present and only reads
the stream, so the ship figure is the save + SSH transfer cost without layer extraction (a real
box would pay that too: ship is, if anything, flattered here).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.remote.box import SSHBox  # noqa: E402
from workbench.remote.hostkeys import KnownHosts  # noqa: E402

from bench.report import write_section  # noqa: E402
from tests.support.sshd import sshd_boxes, sshd_missing  # noqa: E402
from workbench.clients.agent import AsyncAgentClient  # noqa: E402
from workbench.controller.build import ArtifactPlan, ensure_artifact, plan_artifact  # noqa: E402
from workbench.spec.loader import load_specs  # noqa: E402
from workbench.wire.agent import BuildEvent  # noqa: E402


def _quiet(event: BuildEvent) -> None:
    """A build's events, not shown; a failed build stops the benchmark."""
    if event.kind == "error":
        raise RuntimeError(f"the build failed: {event.message}")


def _rmi(image: str) -> None:
    subprocess.run(["docker", "rmi", "-f", image], capture_output=True)


def build_on_box(remote: SSHBox, plan: ArtifactPlan) -> float:
    """Seconds for the box's agent to build `plan` cold: the image removed first, the context
    uploaded through the tunnel, built there (what `workbench deploy` does for a box)."""

    async def build_once() -> bool:
        async with AsyncAgentClient(remote.agent_url, remote.agent_token, timeout=900) as client:
            return await ensure_artifact(client, plan, say=lambda _: None, on_build=_quiet)

    _rmi(plan.artifact)
    started = time.perf_counter()
    built = asyncio.run(build_once())
    seconds = time.perf_counter() - started
    assert built, "the build was cached; the image should have been removed"
    return seconds


def measure(runs: int) -> tuple[list[float], list[float], str, int]:
    with sshd_boxes(1) as (box,), tempfile.TemporaryDirectory() as tmp:
        known = KnownHosts([Path(tmp) / "kh"], Path(tmp) / "wkh")
        (Path(tmp) / "kh").write_text(box.known_hosts_line() + "\n")
        remote = SSHBox(box.target, identity=box.client_key, known_hosts=known,
                            ssh_config=Path(tmp) / "no-config").connect()
        try:
            remote.install()
            loaded = load_specs(REPO / "examples" / "echo")[0]
            builds: list[float] = []
            plan = plan_artifact(loaded, "docker", None)
            artifact = plan.artifact

            for _ in range(runs):
                builds.append(build_on_box(remote, plan))
            size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", artifact],
                                      capture_output=True, text=True, check=True).stdout.strip())
            ships: list[float] = []
            ssh = ["ssh", "-i", str(box.client_key), "-p", str(box.port), "-o", "BatchMode=yes",
                   "-o", f"UserKnownHostsFile={Path(tmp) / 'kh'}", "-o", "StrictHostKeyChecking=yes",
                   f"{box.user}@{box.address}", "docker", "load"]
            for _ in range(runs):
                started = time.perf_counter()
                save = subprocess.Popen(["docker", "save", artifact], stdout=subprocess.PIPE)
                subprocess.run(ssh, stdin=save.stdout, check=True, capture_output=True)
                save.wait()
                ships.append(time.perf_counter() - started)
            _rmi(artifact)
            remote.remove(purge=True)
        finally:
            remote.close()
    return builds, ships, artifact, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = parser.parse_args()
    if why := sshd_missing():
        sys.exit(f"cannot start an sshd box: {why}")
    builds, ships, artifact, size = measure(args.runs)
    build, ship = statistics.median(builds), statistics.median(ships)
    each = ", ".join(f"{b:.1f}" for b in builds)
    print(f"build where it runs: {build:.1f} s (median of {args.runs}: {each})")
    each = ", ".join(f"{s:.1f}" for s in ships)
    print(f"build once and ship: {ship:.1f} s (median of {args.runs}: {each}) for {size / 1e6:.0f} MB")
    if args.write:
        decision = ("build where it runs (kept)" if ship > build * 0.8 else
                    "shipping is clearly faster here, but see the caveat")
        write_section("ship-images", "\n".join([
            "## Images for remote boxes: build where it runs vs ship (`bench/ship_images.py`)",
            "",
            f"examples/echo, Docker runtime, one sshd box on loopback, {platform.machine()}, "
            f"{args.runs} runs each (median). Image {artifact}, {size / 1e6:.0f} MB.",
            "",
            "| strategy | seconds |",
            "|---|---|",
            f"| build where it runs (context uploaded through the tunnel, built by the box's agent) | "
            f"{build:.1f} |",
            f"| build once, `docker save | ssh box docker load` | {ship:.1f} |",
            "",
            f"Decision: {decision}. The build context of an API is kilobytes while its image is "
            "hundreds of MB; on a rented box behind a home uplink the transfer grows with the image, "
            "the build does not (its base image is cached after the first build). On this machine the "
            "box shares the workstation's Docker engine, so `docker load` skips layer extraction: the "
            "ship figure is a lower bound.",
        ]))


if __name__ == "__main__":
    main()

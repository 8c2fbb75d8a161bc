"""scheduler.place: room by CPU and memory, runtime, reachability, spreading."""

from __future__ import annotations

from workbench.controller.scheduler import Demand, HostView, capacity_text, demand_text, fits_ever, place
from workbench.wire.agent import DockerStatus, HostInfo


def info(cpu: int = 2, mem: int = 4 * 2**30, docker: bool = True) -> HostInfo:
    return HostInfo(hostname="h", os="linux", arch="x86_64", python="3.11", agent_version="0", cpu_count=cpu,
                    mem_total_bytes=mem, mem_available_bytes=mem, disk_free_bytes=10**10,
                    docker=DockerStatus(available=docker),
                    runtimes=["docker", "process"] if docker else ["process"])


def test_spreads_over_hosts_with_fewest_replicas_of_the_api() -> None:
    hosts = [HostView("a", True, info(), api_replicas=1), HostView("b", True, info(), api_replicas=0)]
    assert place(Demand(cpu=1), "process", hosts).host == "b"


def test_names_the_host_that_lacks_what() -> None:
    hosts = [HostView("a", True, info(cpu=2), used=Demand(cpu=1.5)),
             HostView("b", True, info(mem=2**30), used=Demand(mem=2**30)),
             HostView("c", False, info()), HostView("d", True, info(docker=False))]
    placement = place(Demand(cpu=1, mem=2**20), "docker", hosts)
    assert placement.host is None
    reason = placement.reason or ""
    assert "a lacks CPU" in reason and "b lacks memory" in reason
    assert "c is not reachable" in reason and "d has no docker runtime" in reason
    assert place(Demand(cpu=0.5), "process", hosts).host == "b"  # most free CPU


def test_says_what_is_short_and_that_it_is_reserved() -> None:
    full = [HostView("a", True, info(cpu=2), used=Demand(cpu=2))]
    placement = place(Demand(cpu=1), "process", full)
    assert placement.shortage == "no CPU"
    assert placement.reason == "a lacks CPU: 1 core wanted, 2 of 2 reserved by replicas"
    both = [HostView("a", True, info(cpu=2), used=Demand(cpu=2)),
            HostView("b", True, info(mem=2**30), used=Demand(mem=2**30))]
    assert place(Demand(cpu=1, mem=2**20), "process", both).shortage == "no CPU/memory"
    assert place(Demand(), "process", [HostView("c", False, info())]).shortage == "no host"


def test_fits_ever_counts_totals_not_what_is_free() -> None:
    busy = HostView("a", True, info(cpu=2, mem=2**30), used=Demand(cpu=2, mem=2**30))
    assert fits_ever(busy, Demand(cpu=2, mem=2**30))  # room once its replicas are gone
    assert not fits_ever(busy, Demand(cpu=64))
    assert not fits_ever(busy, Demand(mem=2**31))
    assert not fits_ever(busy, Demand(gpu=1))  # no GPUs at all
    no_docker = HostView("d", True, info(docker=False))
    assert fits_ever(no_docker, Demand(cpu=1)) and not fits_ever(no_docker, Demand(cpu=1), "docker")
    assert demand_text(Demand(cpu=64, mem=512 * 2**20)) == "64 cores, 512 MiB memory"
    assert capacity_text(info(cpu=2, mem=2**31)) == "2 cores, 2.0 GiB memory"

"""scheduler.place: room by CPU and memory, runtime, reachability, spreading."""

from __future__ import annotations

from workbench.controller.scheduler import Demand, HostView, place
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

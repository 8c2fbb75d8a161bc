"""StateTracker: immutable snapshots for the UI thread, GPU history taken in since the last poll."""

from __future__ import annotations

import time

from workbench.tui.backend import PollResult
from workbench.tui.state import HISTORY, StateTracker, later

from workbench.wire.agent import DockerStatus, GpuInfo, GpuReport, GpuSample, HostInfo
from workbench.wire.control import ApiSummary, HostBody, ReplicaCounts, TrafficBody


def host(name: str, state: str = "ready", gpus: int = 2) -> HostBody:
    info = HostInfo(hostname=name, os="Linux", arch="x86_64", python="3.11", agent_version="0.1.0",
                    cpu_count=8, mem_total_bytes=2**34, mem_available_bytes=2**33, disk_free_bytes=2**35,
                    docker=DockerStatus(available=False), runtimes=["process"],
                    gpus=[GpuInfo(index=i, utilization_gpu=5.0) for i in range(gpus)])
    return HostBody(name=name, address=name, kind="ssh", state=state, last_seen=time.time(),
                    info=info)


def report(*ats: float, util: float = 50.0) -> GpuReport:
    samples = [GpuSample(at=at, utilization_gpu=util) for at in ats]
    return GpuReport(source="fixture", gpus=[GpuInfo(index=0, utilization_gpu=util)], history={0: samples})


def api(name: str, rps: float) -> ApiSummary:
    return ApiSummary(name=name, status="live", replicas=ReplicaCounts(requested=1, ready=1), updated_at=0.0,
                      endpoint=f"http://127.0.0.1:8765/{name}",
                      traffic=TrafficBody(requests_per_second=rps))


def test_gpu_history_grows_by_the_new_samples_and_since_follows_them() -> None:
    tracker = StateTracker()
    assert tracker.gpu_since() == {}
    first = tracker.apply(PollResult(at=100.0, hosts=[host("a", gpus=1)], gpus={"a": report(97, 98, 99)}))
    assert first.gpu_util[("a", 0)] == (50.0, 50.0, 50.0)
    assert tracker.gpu_since() == {"a": 99}
    second = tracker.apply(PollResult(at=101.0, hosts=[host("a", gpus=1)], gpus={"a": report(100, util=70)}))
    assert second.gpu_util[("a", 0)] == (50.0, 50.0, 50.0, 70.0)
    assert first.gpu_util[("a", 0)] == (50.0, 50.0, 50.0)  # an earlier snapshot never changes
    third = tracker.apply(PollResult(at=101.5, hosts=[host("a", gpus=1)], gpus={"a": report()}))
    assert third.gpu_util[("a", 0)] == second.gpu_util[("a", 0)] and tracker.gpu_since() == {"a": 100}
    many = tracker.apply(PollResult(at=500.0, hosts=[host("a", gpus=1)],
                                    gpus={"a": report(*range(200, 200 + 3 * HISTORY))}))
    assert len(many.gpu_util[("a", 0)]) == HISTORY


def test_hosts_without_a_report_get_their_info_value_or_a_gap_and_leavers_are_forgotten() -> None:
    tracker = StateTracker()
    state = tracker.apply(PollResult(at=1.0, hosts=[host("a"), host("b", state="unreachable")]))
    assert state.gpu_util[("a", 0)] == (5.0,) and state.gpu_util[("b", 1)] == (None,)
    tracker.apply(PollResult(at=2.0, hosts=[host("a")], gpus={"a": report(1.5)}))
    state = tracker.apply(PollResult(at=3.0, hosts=[host("c")]))
    assert set(state.gpu_util) == {("c", 0), ("c", 1)} and tracker.gpu_since() == {}


def test_rps_history_errors_and_polls() -> None:
    tracker = StateTracker()
    tracker.apply(PollResult(at=1.0, apis=[api("x", 1.0), api("y", 2.0)]))
    state = tracker.apply(PollResult(at=2.0, apis=[api("x", 3.0)]))
    assert state.rps == {"x": (1.0, 3.0)} and state.polls == 2 and state.loaded
    failed = tracker.fail("connection refused")
    assert failed.error == "connection refused" and failed.apis == state.apis and failed.error_since
    again = tracker.fail("still refused")
    assert again.error_since == failed.error_since
    back = tracker.apply(PollResult(at=3.0, apis=[api("x", 4.0)]))
    assert back.error is None and back.error_since is None and back.polls == 3


def test_the_bin_frees_later() -> None:
    later.empty()
    item = object()
    later.put(item, [item])
    assert any(x is item for x in later._items)
    later.empty()
    assert later._items == []

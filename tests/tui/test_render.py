"""Rendering without a controller: unreachable hosts, lost GPUs, missing values become N/A."""

from __future__ import annotations

import time

from workbench.tui import fmt
from workbench.tui.views import gpu_cells, host_cells
from workbench.tui.widgets import bar, spark

from workbench.wire.agent import DockerStatus, GpuInfo, GpuProcess, HostInfo
from workbench.wire.control import HostBody


def host(state: str, gpus: list[GpuInfo]) -> HostBody:
    info = HostInfo(hostname="box", os="Linux", arch="x86_64", python="3.11", agent_version="0.1.0",
                    cpu_count=8, mem_total_bytes=2**34, mem_available_bytes=2**33, disk_free_bytes=2**35,
                    docker=DockerStatus(available=False), runtimes=["process"], gpus=gpus)
    return HostBody(name="box", address="ssh://box", kind="ssh", state=state,  # type: ignore[arg-type]
                    last_seen=time.time() - 75, info=info)


def test_unreachable_host_is_greyed_with_last_seen() -> None:
    cells = host_cells(host("unreachable", []))
    assert "unreachable 1m ago" in str(cells[2])
    assert all(getattr(c, "style", "") in ("dim", "bold red") for c in cells)


def test_gpu_values_missing_or_lost_are_na() -> None:
    lost = GpuInfo(index=0, error="GPU is lost")
    cells = gpu_cells(host("ready", [lost]), lost, [])
    assert fmt.NA in str(cells[3]) and fmt.NA in str(cells[5]) and "GPU is lost" in str(cells[8])
    busy = GpuInfo(index=1, name="NVIDIA H100", utilization_gpu=90.0, memory_total_bytes=80 * 2**30,
                   memory_used_bytes=40 * 2**30, temperature_c=71, power_draw_w=300, power_limit_w=700,
                   processes=[GpuProcess(pid=1, api="echo")])
    cells = gpu_cells(host("ready", [busy]), busy, [10.0, 50.0, 90.0])
    assert "90%" in str(cells[3]) and "40.0/80.0G" in str(cells[4])
    assert str(cells[5]) == "71°C" and str(cells[6]) == "300/700W" and str(cells[8]) == "echo"
    gone = gpu_cells(host("unreachable", [busy]), busy, [])
    assert fmt.NA in str(gone[3]) and str(gone[5]) == fmt.NA


def test_bars_and_sparks() -> None:
    assert str(bar(None, 100, 6)).strip() == fmt.NA
    assert str(bar(50, 100, 4)) == "██░░"
    assert str(spark([0, 100], 4, 100.0)) == "  ▁█"
    assert len(str(spark([], 5))) == 5


async def test_no_color_renders_in_greys(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """NO_COLOR=1: every colour on screen is a grey — bars, states, an unreachable host, the header.
    (The control API is the fixed stub of bench/tui_refresh.py: colours only, no real parts needed.)"""
    import re

    from workbench.tui.app import WorkbenchApp

    from bench.tui_refresh import Fleet, StubServer
    from workbench.clients.control import ControllerConfig

    async def shot(url: str, no_color: bool) -> set[tuple[int, int, int]]:
        if no_color:
            monkeypatch.setenv("NO_COLOR", "1")
        else:
            monkeypatch.delenv("NO_COLOR", raising=False)
        app = WorkbenchApp(ControllerConfig(url, "token"), interval=3600)
        async with app.run_test(size=(120, 30)) as pilot:
            for _ in range(200):
                if app.state.loaded:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            svg = app.export_screenshot()
        assert "gpu-01" in svg and "unreachable" in svg
        found = re.findall(r"(?:fill|color):\s*#([0-9a-fA-F]{6})", svg)
        return {(int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)) for c in found}

    fleet = Fleet(hosts=4, gpus=2, apis=3, fixed=True, unreachable=("gpu-01",), failed_api="api-01")
    with StubServer(fleet, thread=True) as stub:
        coloured = await shot(stub.url, False)
        grey = await shot(stub.url, True)
    assert any(max(c) - min(c) > 40 for c in coloured)  # without it: real colours
    assert grey and all(max(c) - min(c) <= 8 for c in grey), sorted(grey)


def test_api_screen_shows_the_weights_its_replicas_wait_for() -> None:
    from workbench.tui.screens.api_detail import ApiDetailScreen
    from workbench.tui.state import FleetState

    from workbench.wire.control import ApiDetail

    waiting = "waiting for weights: llm → box0: 120/200 MB, 85 MB/s, ETA 1 s (sftp)"
    detail = ApiDetail(name="llm", status="updating", updated_at=time.time(), endpoint="http://x/llm",
                       message=waiting)
    assert waiting in ApiDetailScreen.summary_text(detail, FleetState()).plain
    other = detail.model_copy(update={"message": "pending: no host has room for a replica"})
    assert "pending" not in ApiDetailScreen.summary_text(other, FleetState()).plain

"""What the agent reports about its host: CPU, memory, disk, platform, Docker."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import psutil

from workbench import __version__
from workbench.wire.agent import DockerStatus, GpuReport, HostInfo
from workbench.wire.replica import RuntimeKind


def host_info(home: Path, docker: DockerStatus, gpus: GpuReport | None = None) -> HostInfo:
    """Sample the host now; `docker` is the runtime's current (cached) status, `gpus` the
    GPU service's current report (without history)."""
    mem = psutil.virtual_memory()
    runtimes: list[RuntimeKind] = ["docker", "process"] if docker.available else ["process"]
    return HostInfo(
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
        python=platform.python_version(),
        agent_version=__version__,
        cpu_count=os.cpu_count() or 1,
        mem_total_bytes=mem.total,
        mem_available_bytes=mem.available,
        disk_free_bytes=psutil.disk_usage(str(home)).free,
        docker=docker,
        runtimes=runtimes,
        gpus=gpus.gpus if gpus else [],
        gpu_driver_version=gpus.driver_version if gpus else None,
        gpu_note=gpus.note if gpus else "GPU telemetry is off",
        load_1m=_load(),
    )


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not every platform has one
        return None

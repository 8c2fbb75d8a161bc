"""The GPU fixture (WORKBENCH_FAKE_GPUS=path.json): simulated GPUs for tests and demos only.

The file is re-read whenever it changes, so a test can move values, add processes or lose a
GPU while the agent runs. Format (every GPU field optional; a missing one reads as N/A):

    {"driver_version": "550.54.15", "nvml_version": "12.550.54.15", "cuda_driver_version": "12.4",
     "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-...",
               "memory_total_bytes": 85899345920, "memory_used_bytes": 0, "memory_free_bytes": ...,
               "utilization_gpu": 10, "temperature_c": 40, "power_draw_w": 60, "power_limit_w": 400,
               "lost": false,
               "processes": [{"pid": 1234, "used_memory_bytes": 1048576}]}],
     "processes": [{"gpu": 0, "pid": 1234, "used_memory_bytes": 1048576}],
     "motion": true}

The file gives each GPU's *resting* values. With "motion" (the default; `"motion": false` keeps
the file's values exactly, for tests that compare them) the values move over time, as a
deterministic function of the clock and of how much of the GPU is allocated to replicas:
utilization rises with the allocated share and wobbles with a 20 s period, memory used grows by
SIM_REPLICA_MEMORY_BYTES per allocated replica (times its share), temperature and power follow
utilization. Only values the file gives move; a missing one stays N/A.

Processes are found as NVML would find them, not taken from the agent: every process in /proc
given a simulated GPU shows up on it with its real PID — the GPU ids in its environment
(``NVIDIA_VISIBLE_DEVICES`` for a container, else ``CUDA_VISIBLE_DEVICES``; an index or a UUID),
the topmost process of each tree that carries them (its children inherit the variable, they are
not GPU users of their own). The agent then maps each PID to its replica the way it does for real
GPUs (container cgroup, session, PID), so that mapping is exercised, not assumed. Only processes
the agent's user may read /proc/PID/environ of are seen. The agent's GPU allocations
(`follow()`, done by GpuService) drive the simulated load only.

Every report from this probe is labelled simulated (source "fixture" and the host note).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError
from workbench.agent.gpu.alloc import Allocation
from workbench.agent.gpu.probe import GpuProbe, GpuProcessReading, GpuReading, Reading, Source

from workbench.wire.agent import GpuInfo

_INFO_FIELDS = set(GpuInfo.model_fields) - {"processes", "allocated_to", "allocated_share", "error"}

#: GPU memory a simulated replica process holds (times its share for fractional replicas).
SIM_REPLICA_MEMORY_BYTES = 2 * 1024**3
#: Period (seconds) of the simulated wobble on every moving value.
SIM_PERIOD_S = 20.0


class FixtureProbe(GpuProbe):
    source: Source = "fixture"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._problem: str | None = None
        self.base_note = f"SIMULATED GPUs from {self.path} (WORKBENCH_FAKE_GPUS; test and demo only)"
        self.note = self.base_note
        self._allocations: Callable[[], Iterable[Allocation]] | None = None
        self.proc = Path("/proc")
        self._load()

    def follow(self, allocations: Callable[[], Iterable[Allocation]]) -> None:
        """Let the simulated load follow the agent's GPU allocations."""
        self._allocations = allocations

    def _snapshot(self) -> list[Allocation]:
        """The agent's allocations; read from the sampler thread, so retry a snapshot torn by a
        concurrent change, and give up (nothing allocated) rather than raise."""
        if self._allocations is None:
            return []
        for _ in range(3):
            try:
                return list(self._allocations())
            except RuntimeError:  # dict changed size during iteration
                continue
        return []

    def _load(self) -> None:
        """Re-read the file when its mtime or size changed."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            self._data, self._stamp = {}, None
            self._problem = f"fixture unreadable: {e.strerror}"
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError("top level must be an object")
        except (OSError, ValueError) as e:
            self._problem = f"fixture unreadable: {e}"  # keep the last good data
            return
        self._stamp, self._data, self._problem = stamp, data, None
        self.driver_version = _str(data.get("driver_version"))
        self.nvml_version = _str(data.get("nvml_version"))
        self.cuda_driver_version = _str(data.get("cuda_driver_version"))

    def read(self) -> Reading:
        self._load()
        gpus: list[GpuReading] = []
        raw = self._data.get("gpus")
        for position, item in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(item, dict):
                gpus.append(_gpu(position, item))
        by_index = {g.info.index: g for g in gpus}
        extra = self._data.get("processes")
        for p in extra if isinstance(extra, list) else []:
            gpu = by_index.get(p.get("gpu", 0)) if isinstance(p, dict) else None
            proc = _process(p) if isinstance(p, dict) else None
            if gpu is not None and proc is not None and not gpu.info.error:
                gpu.processes.append(proc)
        now = time.time()  # after the file's own processes, which win for a PID they name
        self._add_gpu_users(gpus, now, motion=self._data.get("motion", True) is not False)
        notes = [self.base_note]
        if self._problem:
            notes.append(self._problem)
        lost = [str(g.info.index) for g in gpus if g.info.error]
        if lost:
            notes.append(f"GPU {', '.join(lost)} not answering: values N/A")
        self.note = "; ".join(notes)
        return Reading(at=now, gpus=gpus, note=self.note)

    def _add_gpu_users(self, gpus: list[GpuReading], now: float, motion: bool) -> None:
        """Add each process /proc shows using a GPU and, with motion, move the values."""
        allocations = self._snapshot()
        users = gpu_users(self.proc)
        for g in gpus:
            if g.info.error:
                continue
            keys = {str(g.info.index)} | ({g.info.uuid} if g.info.uuid else set())
            share = sum(a.amount for a in allocations if keys & set(a.gpu_ids))
            known = {p.pid for p in g.processes}
            mine = sorted(pid for pid, ids in users.items() if keys & ids and pid not in known)
            each = SIM_REPLICA_MEMORY_BYTES * (share / len(mine) if share else 1.0) if mine else 0
            g.processes.extend(GpuProcessReading(pid, int(each)) for pid in mine)
            if motion:
                _move(g.info, now, share)


def gpu_users(proc: Path = Path("/proc")) -> dict[int, set[str]]:
    """PID → the GPU ids its environment gives it, for the topmost process of each tree that has
    them (not this agent, nor its ancestors: they only passed a variable on)."""
    seen = dict(_gpu_environments(proc))
    ours = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        ours |= {p.pid for p in psutil.Process().parents()}
    users: dict[int, set[str]] = {}
    for pid, (ids, parent) in seen.items():
        if pid in ours or (parent in seen and seen[parent][0] == ids):
            continue
        users[pid] = ids
    return users


def _gpu_environments(proc: Path) -> Iterator[tuple[int, tuple[set[str], int]]]:
    """(pid, (GPU ids, parent pid)) for every readable process whose environment names GPUs."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if b"VISIBLE_DEVICES=" not in environ:
                continue
            stat = (entry / "stat").read_text()
        except OSError:  # gone, or not ours to read
            continue
        env = dict(item.partition(b"=")[::2] for item in environ.split(b"\0") if item)
        raw = env.get(b"NVIDIA_VISIBLE_DEVICES", env.get(b"CUDA_VISIBLE_DEVICES", b""))
        ids = {part.strip() for part in raw.decode(errors="replace").split(",") if part.strip()}
        ids -= {"all", "none", "void", "NoDevFiles"}
        if ids:
            parent = int(stat.rpartition(")")[2].split()[1])  # fields after "(comm)": state ppid …
            yield int(entry.name), (ids, parent)


def _move(info: GpuInfo, now: float, share: float) -> None:
    """Deterministic simulated load: a function of the time and of the allocated share."""
    load = min(1.0, share)
    wave = math.sin(2 * math.pi * now / SIM_PERIOD_S + info.index)
    rest_util = info.utilization_gpu
    if rest_util is not None:
        busy = rest_util + load * (85.0 - rest_util) + (6.0 if load else 2.0) * wave
        info.utilization_gpu = round(min(100.0, max(0.0, busy)), 1)
    if info.utilization_memory is not None:
        mem_util = info.utilization_memory + load * 40 + 2 * wave
        info.utilization_memory = round(min(100.0, max(0.0, mem_util)), 1)
    util = info.utilization_gpu if info.utilization_gpu is not None else load * 85.0
    rise = util - (rest_util or 0.0)
    if info.memory_used_bytes is not None:
        used = info.memory_used_bytes + int(SIM_REPLICA_MEMORY_BYTES * share)
        if info.memory_total_bytes is not None:
            used = min(used, info.memory_total_bytes)
            info.memory_free_bytes = info.memory_total_bytes - used
        info.memory_used_bytes = used
    if info.temperature_c is not None:
        info.temperature_c = round(info.temperature_c + 0.35 * rise + wave, 1)
    if info.power_draw_w is not None:
        top = info.power_limit_w if info.power_limit_w is not None else info.power_draw_w * 4
        draw = info.power_draw_w + (top - info.power_draw_w) * 0.8 * rise / 100
        info.power_draw_w = round(min(top, max(0.0, draw)), 1)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _process(item: dict[str, Any]) -> GpuProcessReading | None:
    try:
        used = item.get("used_memory_bytes")
        return GpuProcessReading(pid=int(item["pid"]), used_memory_bytes=None if used is None else int(used))
    except (KeyError, TypeError, ValueError):
        return None


def _gpu(position: int, item: dict[str, Any]) -> GpuReading:
    index = item.get("index", position)
    index = index if isinstance(index, int) else position
    if item.get("lost"):
        return GpuReading(GpuInfo(index=index, error="GPU is lost (fell off the bus); values N/A"))
    values = {k: v for k, v in item.items() if k in _INFO_FIELDS and v is not None}
    values["index"] = index
    try:
        info = GpuInfo.model_validate(values)
    except ValidationError as e:
        return GpuReading(GpuInfo(index=index, error=f"fixture entry invalid: {e.errors()[0]['msg']}"))
    procs = item.get("processes")
    readings = [_process(p) for p in (procs if isinstance(procs, list) else []) if isinstance(p, dict)]
    return GpuReading(info, [p for p in readings if p is not None])

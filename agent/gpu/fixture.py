"""The GPU fixture (WORKBENCH_FAKE_GPUS=path.json): simulated GPUs for tests and demos only.

The file is re-read whenever it changes, so a test can move values, add processes or lose a
GPU while the agent runs. Format (every GPU field optional; a missing one reads as N/A):

    {"driver_version": "550.54.15", "nvml_version": "12.550.54.15", "cuda_driver_version": "12.4",
     "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-...",
               "memory_total_bytes": 85899345920, "memory_used_bytes": 0, "memory_free_bytes": ...,
               "utilization_gpu": 10, "temperature_c": 40, "power_draw_w": 60, "power_limit_w": 400,
               "lost": false,
               "processes": [{"pid": 1234, "used_memory_bytes": 1048576}]}],
     "processes": [{"gpu": 0, "pid": 1234, "used_memory_bytes": 1048576}]}

Every report from this probe is labelled simulated (source "fixture" and the host note).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from workbench.agent.gpu.probe import GpuProbe, GpuProcessReading, GpuReading, Reading, Source

from workbench.models import GpuInfo

_INFO_FIELDS = set(GpuInfo.model_fields) - {"processes", "allocated_to", "allocated_share", "error"}


class FixtureProbe(GpuProbe):
    source: Source = "fixture"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._problem: str | None = None
        self.base_note = f"SIMULATED GPUs from {self.path} (WORKBENCH_FAKE_GPUS; test and demo only)"
        self.note = self.base_note
        self._load()

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
        notes = [self.base_note]
        if self._problem:
            notes.append(self._problem)
        lost = [str(g.info.index) for g in gpus if g.info.error]
        if lost:
            notes.append(f"GPU {', '.join(lost)} not answering: values N/A")
        self.note = "; ".join(notes)
        return Reading(at=time.time(), gpus=gpus, note=self.note)


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

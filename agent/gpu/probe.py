"""The GPU probe interface: one reading of every GPU, from NVML, a fixture file, or nothing.

`make_probe()` picks the implementation: the fixture when WORKBENCH_FAKE_GPUS names a file
(test and demo only), else NVML, else a probe that reports no GPUs and says why. A probe never
raises for a GPU or a field it cannot read: that value is None ("N/A") and the reading says why.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from typing import Literal

from workbench.wire.agent import GpuInfo

FAKE_GPUS_ENV = "WORKBENCH_FAKE_GPUS"

Source = Literal["nvml", "fixture", "none"]


@dataclass
class GpuProcessReading:
    """A process on a GPU as the probe sees it (host PID; not yet mapped to a replica)."""

    pid: int
    used_memory_bytes: int | None = None


@dataclass
class GpuReading:
    """One GPU: every GpuInfo value the probe could read (processes without replica mapping)."""

    info: GpuInfo
    processes: list[GpuProcessReading] = field(default_factory=list)


@dataclass
class Reading:
    """One sample of the whole host."""

    at: float
    gpus: list[GpuReading] = field(default_factory=list)
    note: str | None = None


class GpuProbe(abc.ABC):
    """Reads the host's GPUs. `read()` blocks briefly and never raises."""

    source: Source
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: str | None = None
    #: A host-level note that holds for the probe's lifetime (e.g. "simulated", "no driver").
    note: str | None = None

    @abc.abstractmethod
    def read(self) -> Reading: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the library (NVML shutdown)."""


class NoGpuProbe(GpuProbe):
    """No GPU information on this host, and the reason."""

    source: Source = "none"

    def __init__(self, note: str) -> None:
        self.note = note

    def read(self) -> Reading:
        import time

        return Reading(at=time.time(), note=self.note)


def make_probe(environ: dict[str, str] | None = None) -> GpuProbe:
    """The fixture when WORKBENCH_FAKE_GPUS is set, else NVML, else NoGpuProbe with the reason."""
    env = os.environ if environ is None else environ
    fake = env.get(FAKE_GPUS_ENV)
    if fake:
        from workbench.agent.gpu.fixture import FixtureProbe

        return FixtureProbe(fake)
    from workbench.agent.gpu.nvml import NvmlProbe, NvmlUnavailable

    try:
        return NvmlProbe()
    except NvmlUnavailable as e:
        return NoGpuProbe(str(e))

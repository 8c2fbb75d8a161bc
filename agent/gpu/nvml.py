"""The NVML probe (nvidia-ml-py): every value read separately, so one unsupported field or one
lost GPU costs only that value. NVML is initialised once, in the constructor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from workbench.agent.gpu.probe import GpuProbe, GpuProcessReading, GpuReading, Reading, Source

from workbench.wire.agent import GpuInfo
from workbench.wire.errors import Failed, Unavailable

T = TypeVar("T")


class NvmlUnavailable(Unavailable):
    """NVML cannot be used on this host; str() is the host-level note."""


class _Lost(Failed):
    """The GPU fell off the bus (NVML_ERROR_GPU_IS_LOST) while we read it."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(value: int) -> str:
    """NVML's 12040 as "12.4"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


class NvmlProbe(GpuProbe):
    source: Source = "nvml"

    def __init__(self, module: ModuleType | None = None) -> None:
        """`module` replaces pynvml (tests replay recorded NVML answers through it)."""
        if module is None:
            try:
                import pynvml

                module = pynvml
            except ImportError as e:  # the agent extra was not installed
                raise NvmlUnavailable("nvidia-ml-py is not installed: no GPU telemetry") from e
        nvml: Any = module
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError_LibraryNotFound as e:
            raise NvmlUnavailable("NVML library not found: no NVIDIA driver on this host") from e
        except nvml.NVMLError_DriverNotLoaded as e:
            raise NvmlUnavailable("NVIDIA driver is not loaded (NVML: driver not loaded)") from e
        except nvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML failed to initialise: {e}") from e
        except OSError as e:
            raise NvmlUnavailable(f"NVML failed to load: {e}") from e
        self.driver_version = self._value(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        self.nvml_version = self._value(lambda: _text(nvml.nvmlSystemGetNVMLVersion()))
        cuda = self._value(nvml.nvmlSystemGetCudaDriverVersion)
        self.cuda_driver_version = _cuda_version(int(cuda)) if cuda is not None else None

    def _value(self, fn: Callable[[], T]) -> T | None:
        """fn(), or None when NVML cannot say; a lost GPU is raised as _Lost."""
        try:
            return fn()
        except self.nvml.NVMLError_GpuIsLost as e:
            raise _Lost("GPU is lost") from e
        except self.nvml.NVMLError:
            return None

    def read(self) -> Reading:
        nvml = self.nvml
        now = time.time()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as e:
            return Reading(at=now, note=f"NVML cannot count GPUs: {e}")
        gpus = [self._gpu(index) for index in range(count)]
        lost = [g.info.index for g in gpus if g.info.error]
        note = f"GPU {', '.join(map(str, lost))} not answering: values N/A" if lost else None
        return Reading(at=now, gpus=gpus, note=note)

    def _gpu(self, index: int) -> GpuReading:
        nvml = self.nvml
        info = GpuInfo(index=index)
        try:
            handle = self._value(lambda: nvml.nvmlDeviceGetHandleByIndex(index))
            if handle is None:
                info.error = "NVML cannot open this GPU"
                return GpuReading(info)
            return self._fill(info, handle)
        except _Lost:
            info.error = "GPU is lost (fell off the bus); values N/A"
            return GpuReading(info)

    def _fill(self, info: GpuInfo, h: Any) -> GpuReading:
        nvml, v = self.nvml, self._value
        info.uuid = v(lambda: _text(nvml.nvmlDeviceGetUUID(h)))
        info.name = v(lambda: _text(nvml.nvmlDeviceGetName(h)))
        mem = v(lambda: nvml.nvmlDeviceGetMemoryInfo(h))
        if mem is not None:
            info.memory_total_bytes, info.memory_used_bytes = int(mem.total), int(mem.used)
            info.memory_free_bytes = int(mem.free)
        util = v(lambda: nvml.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            info.utilization_gpu, info.utilization_memory = float(util.gpu), float(util.memory)
        temp = v(lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        info.temperature_c = float(temp) if temp is not None else None
        power = v(lambda: nvml.nvmlDeviceGetPowerUsage(h))  # milliwatts
        info.power_draw_w = power / 1000.0 if power is not None else None
        limit = v(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
        info.power_limit_w = limit / 1000.0 if limit is not None else None
        fan = v(lambda: nvml.nvmlDeviceGetFanSpeed(h))
        info.fan_percent = float(fan) if fan is not None else None
        info.clock_sm_mhz = v(lambda: int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)))
        info.clock_memory_mhz = v(lambda: int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)))
        mig = v(lambda: nvml.nvmlDeviceGetMigMode(h))
        info.mig_mode = bool(mig[0] == nvml.NVML_DEVICE_MIG_ENABLE) if mig is not None else None
        return GpuReading(info, self._processes(h))

    def _processes(self, h: Any) -> list[GpuProcessReading]:
        nvml = self.nvml
        found: dict[int, GpuProcessReading] = {}
        for fn in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
            for p in self._value(lambda fn=fn: fn(h)) or []:  # type: ignore[misc]
                used = getattr(p, "usedGpuMemory", None)
                entry = found.setdefault(int(p.pid), GpuProcessReading(pid=int(p.pid)))
                if used is not None:
                    entry.used_memory_bytes = max(entry.used_memory_bytes or 0, int(used))
        return sorted(found.values(), key=lambda p: p.pid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()

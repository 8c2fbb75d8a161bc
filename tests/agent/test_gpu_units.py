"""The NVML probe against recorded NVML answers (errors included), the fixture parser, the process
map's cgroup parsing, allocation rules, and the Docker runtime's GPU options."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest
from workbench.agent.gpu.alloc import Allocation, conflict
from workbench.agent.gpu.nvml import NvmlProbe, NvmlUnavailable
from workbench.agent.gpu.probe import make_probe
from workbench.agent.gpu.procmap import ProcMap, ReplicaRef, container_of
from workbench.agent.gpu.sampler import GpuSampler
from workbench.agent.runtimes.docker import gpu_options

from tests.support.real_parts import wait_until


class RecordedNvml:
    """pynvml's surface replaying recorded answers; an exception instance is raised."""

    def __init__(self, answers: dict[str, Any], init_error: Exception | None = None) -> None:
        self.answers = answers
        self.init_error = init_error
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))

    def _answer(self, key: str) -> Any:
        value = self.answers[key]
        if isinstance(value, Exception):
            raise value
        return value

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._answer("driver"))

    def nvmlSystemGetNVMLVersion(self) -> str:
        return str(self._answer("nvml"))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return int(self._answer("cuda"))

    def nvmlDeviceGetCount(self) -> int:
        return len(self.answers["gpus"])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def _gpu(self, h: int, key: str) -> Any:
        value = self.answers["gpus"][h].get(
            key, pynvml.NVMLError_NotSupported(pynvml.NVML_ERROR_NOT_SUPPORTED)
        )
        if isinstance(value, Exception):
            raise value
        return value

    def nvmlDeviceGetUUID(self, h: int) -> Any:
        return self._gpu(h, "uuid")

    def nvmlDeviceGetName(self, h: int) -> Any:
        return self._gpu(h, "name")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._gpu(h, "mem")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._gpu(h, "util")

    def nvmlDeviceGetTemperature(self, h: int, _: int) -> Any:
        return self._gpu(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h: int) -> Any:
        return self._gpu(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> Any:
        return self._gpu(h, "limit_mw")

    def nvmlDeviceGetFanSpeed(self, h: int) -> Any:
        return self._gpu(h, "fan")

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> Any:
        return self._gpu(h, f"clock{kind}")

    def nvmlDeviceGetMigMode(self, h: int) -> Any:
        return self._gpu(h, "mig")

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> Any:
        return self._gpu(h, "procs")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> Any:
        return []


LOST = pynvml.NVMLError_GpuIsLost(pynvml.NVML_ERROR_GPU_IS_LOST)
A100 = {
    "uuid": "GPU-1",
    "name": b"NVIDIA A100",
    "mem": SimpleNamespace(total=80, used=30, free=50),
    "util": SimpleNamespace(gpu=55, memory=20),
    "temp": 61,
    "power_mw": 250_500,
    "limit_mw": 400_000,
    f"clock{pynvml.NVML_CLOCK_SM}": 1410,
    f"clock{pynvml.NVML_CLOCK_MEM}": 1593,
    "mig": (0, 0),
    "procs": [SimpleNamespace(pid=42, usedGpuMemory=1024), SimpleNamespace(pid=43, usedGpuMemory=None)],
}


def test_recorded_answers_with_not_supported_and_lost() -> None:
    nvml = RecordedNvml(
        {
            "driver": "550.54.15",
            "nvml": "12.550.54.15",
            "cuda": 12040,
            "gpus": [A100, {"uuid": "GPU-2", "name": "x", "mem": LOST}],
        }
    )
    probe = NvmlProbe(nvml)
    assert (probe.driver_version, probe.nvml_version, probe.cuda_driver_version) == (
        "550.54.15",
        "12.550.54.15",
        "12.4",
    )
    reading = probe.read()
    a, b = reading.gpus
    assert a.info.name == "NVIDIA A100" and a.info.memory_free_bytes == 50 and a.info.utilization_gpu == 55
    assert a.info.power_draw_w == 250.5 and a.info.power_limit_w == 400 and a.info.clock_sm_mhz == 1410
    assert a.info.fan_percent is None  # NotSupported -> N/A, the rest still read
    assert a.info.mig_mode is False and a.info.error is None
    assert [(p.pid, p.used_memory_bytes) for p in a.processes] == [(42, 1024), (43, None)]
    assert b.info.error and "lost" in b.info.error and b.info.memory_total_bytes is None
    assert b.info.name == "x"  # what was read before it fell off stays
    assert reading.note == "GPU 1 not answering: values N/A"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "no NVIDIA driver"),
        (pynvml.NVMLError_DriverNotLoaded(pynvml.NVML_ERROR_DRIVER_NOT_LOADED), "driver is not loaded"),
    ],
)
def test_init_errors_become_notes(error: Exception, words: str) -> None:
    with pytest.raises(NvmlUnavailable, match=words):
        NvmlProbe(RecordedNvml({}, init_error=error))


@pytest.mark.gpu
def test_make_probe_without_nvml_reports_none() -> None:
    probe = make_probe({})
    if probe.source == "nvml":
        pytest.skip("NVML present")
    assert probe.source == "none" and probe.note and probe.read().gpus == []


def test_fixture_history_ring_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(
        json.dumps(
            {
                "gpus": [
                    {"index": 0, "utilization_gpu": 5},
                    {"index": 1, "lost": True},
                    {"index": 2, "memory_total_bytes": "lots"},
                ],
                "motion": False,
            }
        )
    )
    sampler = GpuSampler(make_probe({"WORKBENCH_FAKE_GPUS": str(path)}), interval=1, history_seconds=3)
    for _ in range(5):
        sampler.sample_once()
    history = sampler.history()
    assert len(history[0]) == 3 and history[0][-1].utilization_gpu == 5
    latest = sampler.latest()
    assert latest is not None and latest.gpus[1].info.error and latest.gpus[2].info.error
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    reading = sampler.sample_once()
    assert len(reading.gpus) == 3 and "fixture unreadable" in (reading.note or "")  # last good data kept


def test_cgroup_container_ids_and_pid_groups(tmp_path: Path) -> None:
    cid = "a" * 64
    for pid, text in {
        10: f"0::/system.slice/docker-{cid}.scope\n",
        11: f"12:memory:/docker/{cid}\n",
        12: "0::/user.slice/user-1000.slice\n",
        13: f"0::/kubepods/x/cri-containerd-{'b' * 64}.scope",
    }.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    assert container_of(10, tmp_path) == cid and container_of(11, tmp_path) == cid
    assert container_of(12, tmp_path) is None and container_of(99, tmp_path) is None
    pm = ProcMap(
        [ReplicaRef("r1", "api", container_id=cid), ReplicaRef("r2", "api", pid=os.getpid())], tmp_path
    )
    assert pm.owner(10).replica_id == "r1"
    assert pm.owner(13).replica_id is None and pm.owner(13).container_id == "b" * 64
    assert ProcMap([ReplicaRef("r2", "api", pid=os.getpid())]).owner(os.getpid()).replica_id == "r2"


def test_allocation_rules() -> None:
    whole = Allocation("a", ("0",), None)
    assert conflict(Allocation("b", ("0",), None), [whole])
    assert conflict(Allocation("b", ("0",), 0.5), [whole])
    assert conflict(Allocation("b", ("1",), None), [whole]) is None
    half = Allocation("a", ("0",), 0.5)
    assert conflict(Allocation("b", ("0",), 0.5), [half]) is None
    assert "already shared" in (conflict(Allocation("c", ("0",), 0.6), [half]) or "")
    assert "twice" in (conflict(Allocation("b", ("1", "1"), None), []) or "")


def test_docker_gpu_options_real_and_simulated() -> None:
    requests, env, labels = gpu_options(["1", "3"], simulated=False)
    assert [dict(r) for r in requests] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["1", "3"], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert env == {"WORKBENCH_GPU_IDS": "1,3"} and labels == {"workbench.gpus": "1,3"}
    requests, env, labels = gpu_options(["1", "3"], simulated=True)
    assert requests == [] and env["NVIDIA_VISIBLE_DEVICES"] == "1,3"
    assert json.loads(labels["workbench.gpu-device-request"])["DeviceIDs"] == ["1", "3"]
    assert gpu_options([], simulated=False) == ([], {}, {})


def _moving_fixture(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "moving.json"
    gpu = {"memory_total_bytes": 16 * 1024**3, "memory_used_bytes": 0, "memory_free_bytes": 16 * 1024**3,
           "utilization_gpu": 0, "temperature_c": 35, "power_draw_w": 40, "power_limit_w": 300}
    path.write_text(json.dumps({"gpus": [dict(gpu, index=0, uuid=f"GPU-unit-{tmp_path.name}-0"),
                                         dict(gpu, index=1, uuid=f"GPU-unit-{tmp_path.name}-1"),
                                         {"index": 2}], **extra}))
    return path


@pytest.fixture
def gpu_user(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``gpu_user(VAR="ids")``: a real process (a shell with a child) given GPUs by its
    environment, as a replica would be; killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        clean = {k: v for k, v in os.environ.items() if not k.endswith("_VISIBLE_DEVICES")}
        proc = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], env={**clean, **env}, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            os.killpg(proc.pid, 9)
            proc.wait()


def _pids(reading: Any, gpu: int, among: set[int]) -> list[tuple[int, int | None]]:
    """(pid, used memory) of the processes on one GPU that this test started."""
    return [(p.pid, p.used_memory_bytes) for p in reading.gpus[gpu].processes if p.pid in among]


def test_fixture_values_move_with_time_and_allocations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_user: Callable[..., subprocess.Popen[bytes]]
) -> None:
    from workbench.agent.gpu import fixture

    path = _moving_fixture(tmp_path)
    probe = make_probe({"WORKBENCH_FAKE_GPUS": str(path)})
    assert isinstance(probe, fixture.FixtureProbe) and "SIMULATED" in (probe.note or "")
    allocations = [Allocation("r1", ("1",), None)]
    probe.follow(lambda: allocations)
    user = gpu_user(CUDA_VISIBLE_DEVICES=f"GPU-unit-{tmp_path.name}-1")
    mine = {user.pid}
    wait_until(lambda: _pids(probe.read(), 1, mine), 10, what="the process seen in /proc")
    clock = iter([1000.0, 1005.0, 1005.0])
    monkeypatch.setattr(fixture.time, "time", lambda: next(clock))
    first, later, again = probe.read(), probe.read(), probe.read()
    assert "SIMULATED" in (first.note or "")
    idle0, busy0 = first.gpus[0].info, first.gpus[1].info
    assert idle0.utilization_gpu != later.gpus[0].info.utilization_gpu  # moves over time
    assert later.gpus[1].info == again.gpus[1].info  # deterministic for one instant
    assert (busy0.utilization_gpu or 0) > 60 > (idle0.utilization_gpu or 0)  # load follows allocation
    assert (busy0.temperature_c or 0) > (idle0.temperature_c or 0)
    assert (busy0.power_draw_w or 0) > (idle0.power_draw_w or 0)
    assert busy0.memory_used_bytes == fixture.SIM_REPLICA_MEMORY_BYTES
    assert busy0.memory_free_bytes == 14 * 1024**3
    assert first.gpus[2].info.utilization_gpu is None  # missing in the file: stays N/A
    # the process given GPU 1 shows up on it with its own PID (the shell, not its child), and
    # nowhere else
    children = {c.pid for c in psutil.Process(user.pid).children()}
    assert children and _pids(first, 1, mine | children) == [(user.pid, fixture.SIM_REPLICA_MEMORY_BYTES)]
    assert _pids(first, 0, mine | children) == [] and _pids(first, 2, mine | children) == []


def test_fixture_processes_come_from_proc(
    tmp_path: Path, gpu_user: Callable[..., subprocess.Popen[bytes]]
) -> None:
    from workbench.agent.gpu import fixture

    probe = make_probe({"WORKBENCH_FAKE_GPUS": str(_moving_fixture(tmp_path, motion=False))})
    assert isinstance(probe, fixture.FixtureProbe)
    uuid0 = f"GPU-unit-{tmp_path.name}-0"
    a = gpu_user(CUDA_VISIBLE_DEVICES=uuid0)
    b = gpu_user(NVIDIA_VISIBLE_DEVICES=uuid0, CUDA_VISIBLE_DEVICES="3")  # a container: NVIDIA_ wins
    c = gpu_user(CUDA_VISIBLE_DEVICES="all")  # not a device list
    mine = {a.pid, b.pid, c.pid}
    allocs = [Allocation("a", ("0",), 0.5), Allocation("b", ("0",), 0.5)]
    probe.follow(lambda: allocs)
    def both() -> Any:
        reading = probe.read()
        return reading if len(_pids(reading, 0, mine)) == 2 else None

    reading = wait_until(both, 10, what="both processes seen in /proc")
    half = fixture.SIM_REPLICA_MEMORY_BYTES // 2
    assert _pids(reading, 0, mine) == sorted([(a.pid, half), (b.pid, half)])
    assert _pids(reading, 1, mine) == [] and _pids(reading, 2, mine) == []
    g0 = reading.gpus[0].info
    assert g0.utilization_gpu == 0 and g0.memory_used_bytes == 0  # motion off: file values
    # the file's own processes win for a PID they name
    _moving_fixture(tmp_path, motion=False, processes=[{"gpu": 0, "pid": a.pid, "used_memory_bytes": 7}])
    assert (a.pid, 7) in _pids(probe.read(), 0, mine)
    # a torn snapshot (dict changed during iteration) never makes the probe raise
    def torn() -> list[Allocation]:
        raise RuntimeError("dictionary changed size during iteration")

    probe.follow(torn)
    assert len(_pids(probe.read(), 0, mine)) == 2

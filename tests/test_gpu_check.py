"""scripts/gpu-check's parts that run without a GPU: the no-driver exit, the project it deploys,
and the pure evaluation of a run (good and bad observations)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from workbench.gpu_check import Observed, evaluate, project, summary
from workbench.spec.loader import load_specs
from workbench.wire.agent import GpuInfo, GpuProcess, GpuReport, GpuSample

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


def nvidia_here() -> bool:
    return os.path.exists("/proc/driver/nvidia") or subprocess.run(
        "command -v nvidia-smi || ldconfig -p | grep -q libnvidia-ml", shell=True,
        capture_output=True).returncode == 0


@pytest.mark.gpu
def test_script_parses_and_without_nvidia_exits_0_with_the_message(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu-check")]).returncode == 0
    if nvidia_here():
        pytest.skip("an NVIDIA driver is present: the script would run the real check")
    result = subprocess.run([str(REPO / "scripts" / "gpu-check")], capture_output=True, text=True,
                            env={**os.environ, "OUT": str(tmp_path / "out")}, timeout=60)
    assert result.returncode == 0 and "no NVIDIA driver: nothing to check" in result.stdout
    assert "nothing to check" in (tmp_path / "out" / "gpu-check.txt").read_text()


def test_the_deployed_project_asks_for_one_gpu(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path))
    assert loaded.spec.name == "digits-torch" and loaded.spec.compute.gpu == 1


def _report(t0: float, *, util_load: float = 60.0, mapped: bool = True, every: float = 1.0) -> GpuReport:
    history = []
    t = t0
    while t <= t0 + 40:
        loading = t >= t0 + 8
        history.append(GpuSample(at=t, utilization_gpu=util_load if loading else 0.0,
                                 memory_used_bytes=(3 if loading else 2) * GIB))
        t += every
    proc = GpuProcess(pid=4321, used_memory_bytes=GIB, replica_id="r1" if mapped else None,
                      api="digits-torch" if mapped else None)
    gpu = GpuInfo(index=0, name="NVIDIA H100", processes=[proc], allocated_to=["r1"], allocated_share=1.0)
    return GpuReport(source="nvml", gpus=[gpu], history={0: history})


def _observed(report: GpuReport, t0: float, **over: object) -> Observed:
    values: dict[str, object] = dict(replica_id="r1", gpu_ids=["0"], before_memory_used=GIB // 2,
                                     idle_from=t0 + 1, load_from=t0 + 8, load_to=t0 + 38, report=report,
                                     answers=500, wrong=[], devices={"cuda"})
    values.update(over)
    return Observed(**values)  # type: ignore[arg-type,unused-ignore]


def test_evaluate_passes_a_good_run() -> None:
    checks = evaluate(_observed(_report(1000.0), 1000.0))
    assert all(c.ok for c in checks), [c.what for c in checks if not c.ok]
    assert "all" in summary(checks, ["facts"]) and "passed" in summary(checks, [])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"report": "unmapped"}, "mapped to it"),
        ({"report": "flat"}, "utilization rose"),
        ({"report": "sparse"}, "one per second"),
        ({"before_memory_used": 10 * GIB}, "memory rose"),
        ({"wrong": ["answer {'digit': 8}"]}, "wrong"),
        ({"devices": {"cpu"}}, "cuda"),
        ({"gpu_ids": ["1"]}, "pinned"),
    ],
)
def test_evaluate_names_what_failed(change: dict[str, object], words: str) -> None:
    t0 = 1000.0
    kind = change.pop("report", None)
    report = {"unmapped": _report(t0, mapped=False), "flat": _report(t0, util_load=0.0),
              "sparse": _report(t0, every=3.0)}.get(str(kind), _report(t0))
    checks = evaluate(_observed(report, t0, **change))
    failed = [c.what for c in checks if not c.ok]
    assert failed and any(words in f for f in failed), failed
    assert "FAILED" in summary(checks, [])


@pytest.mark.slow
def test_the_run_end_to_end_on_simulated_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole orchestration (controller, deploy of digits-torch, load, report, cleanup) with the
    GPU fixture standing in for NVML — here only, by patching; the script itself never simulates.
    The checks that need a real GPU (source nvml, cuda) must fail, and say so; the rest pass."""
    import json

    from workbench.agent.gpu.fixture import FixtureProbe

    from workbench import gpu_check as check

    fixture = tmp_path / "gpus.json"
    fixture.write_text(json.dumps({"gpus": [{"index": 0, "name": "SIMULATED", "memory_total_bytes": 16 * GIB,
                                             "memory_used_bytes": 0, "utilization_gpu": 0}]}))
    monkeypatch.setattr("workbench.agent.gpu.nvml.NvmlProbe", lambda: FixtureProbe(str(fixture)))
    original = check.Run.__init__

    def init(self: check.Run, home: Path, load_seconds: float) -> None:
        original(self, home, load_seconds)
        self.env["WORKBENCH_FAKE_GPUS"] = str(fixture)  # the real script removes it

    monkeypatch.setattr(check.Run, "__init__", init)
    text, ok = check.run(load_seconds=6)
    print(text)
    assert not ok, text
    # the simulated utilization follows allocation and a wave in time, not the load, so whether it
    # "rose under load" is chance here; only a real GPU makes that check meaningful
    failed = [line for line in text.splitlines()
              if line.startswith("FAIL ") and "utilization rose" not in line]
    assert len(failed) == 2 and "source is 'fixture'" in failed[0] and "cuda" in failed[1], text
    assert "ok   replica" in text and "mapped to it" in text and "0 wrong" in text
    assert "SIMULATED" in text  # the host view in the summary says so

"""The real-GPU check behind `scripts/gpu-check` (run it through that script). It drives the
workstation (CLI, controller) against the local agent, so it lives beside the CLI, not in the agent.

On a machine with an NVIDIA GPU: a workbench home of its own, a controller whose local agent reads
real NVML (WORKBENCH_FAKE_GPUS is removed from the environment) and runs the process runtime;
`workbench deploy --runtime process` of examples/digits-torch with `compute.gpu: 1`; ~30 s of
load through the router; then it asserts, from the agent's GPU report:

- the replica was pinned to GPU 0 and its PID shows up on GPU 0 mapped to that replica;
- GPU utilization and memory rose during the load (above the idle / pre-deploy values);
- the history holds one sample per second;
- every prediction is correct (digit 0 for the sample in tests/test_examples.py, on "cuda").

`evaluate()` is pure (a report and timings in, checks out) so it is unit-tested without a GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.wire.agent import GpuReport

#: The "0" from sklearn's digits, as in tests/test_examples.py.
DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
              0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0,
              0, 0, 6, 13, 10, 0, 0, 0]
API = "digits-torch"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Verdict:
    ok: bool
    what: str


@dataclass
class Observed:
    """What the run saw; `evaluate` turns it into checks."""

    replica_id: str
    gpu_ids: list[str]
    before_memory_used: int | None  # GPU 0 before anything was deployed (direct NVML read)
    idle_from: float  # replica ready, no load
    load_from: float
    load_to: float
    report: GpuReport  # with history, read right after the load
    answers: int = 0
    wrong: list[str] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)


def _window(samples: list[Any], start: float, end: float) -> list[Any]:
    return [s for s in samples if start <= s.at <= end]


def evaluate(obs: Observed) -> list[Verdict]:
    checks = [
        Verdict(obs.report.source == "nvml", f"GPU report source is {obs.report.source!r} (want 'nvml')"),
        Verdict(obs.gpu_ids == ["0"], f"replica {obs.replica_id} pinned to GPUs {obs.gpu_ids} (want ['0'])"),
    ]
    gpu0 = next((g for g in obs.report.gpus if g.index == 0), None)
    if gpu0 is None:
        return [*checks, Verdict(False, "GPU 0 is in the report")]
    mine = [p for p in gpu0.processes if p.replica_id == obs.replica_id]
    checks.append(Verdict(bool(mine), f"replica {obs.replica_id}'s PID on GPU 0 mapped to it: "
                        f"{[(p.pid, p.replica_id) for p in gpu0.processes]}"))
    if mine:
        used = mine[0].used_memory_bytes
        checks.append(Verdict(used is None or used > 0,
                            f"the replica's process holds {_mib(used)} MiB on GPU 0"))
    history = obs.report.history.get(0, [])
    idle = _window(history, obs.idle_from, obs.load_from - 0.5)
    load = _window(history, obs.load_from + 2, obs.load_to)  # the first seconds warm up
    util_idle = max((s.utilization_gpu for s in idle if s.utilization_gpu is not None), default=0.0)
    util_load = max((s.utilization_gpu for s in load if s.utilization_gpu is not None), default=None)
    checks.append(Verdict(util_load is not None and util_load > util_idle,
                        f"GPU 0 utilization rose under load: idle max {util_idle}%, load max {util_load}%"))
    mem_load = max((s.memory_used_bytes for s in load if s.memory_used_bytes is not None), default=None)
    before = obs.before_memory_used
    checks.append(Verdict(mem_load is not None and before is not None and mem_load > before,
                        f"GPU 0 memory rose: {_mib(before)} MiB before deploy, "
                        f"{_mib(mem_load)} MiB under load"))
    span = obs.load_to - obs.load_from
    in_load = _window(history, obs.load_from, obs.load_to)
    gaps = [b.at - a.at for a, b in itertools.pairwise(in_load)]
    median = statistics.median(gaps) if gaps else None
    checks.append(Verdict(len(in_load) >= int(span * 0.9) and median is not None and 0.9 <= median <= 1.1
                        and all(0.5 <= g <= 2.0 for g in gaps),
                        f"history: {len(in_load)} samples in {span:.0f} s of load, median gap "
                        f"{'N/A' if median is None else f'{median:.3f}'} s, max gap "
                        f"{max(gaps, default=0):.2f} s (want one per second)"))
    checks.append(Verdict(obs.answers > 0 and not obs.wrong,
                        f"{obs.answers} predictions, {len(obs.wrong)} wrong or failed"
                        + (f" (first: {obs.wrong[0]})" if obs.wrong else "")))
    checks.append(Verdict(obs.devices == {"cuda"},
                          f"predictions ran on {sorted(obs.devices)} (want ['cuda'])"))
    return checks


def _mib(value: int | None) -> str:
    return "N/A" if value is None else str(value >> 20)


def summary(checks: list[Verdict], facts: list[str]) -> str:
    failed = [c for c in checks if not c.ok]
    lines = ["gpu-check (real NVML, process runtime, examples/digits-torch on GPU 0)", *facts, ""]
    lines += [("ok   " if c.ok else "FAIL ") + c.what for c in checks]
    lines.append("")
    lines.append(f"gpu-check: FAILED ({len(failed)} of {len(checks)} checks)" if failed
                 else f"gpu-check: all {len(checks)} checks passed")
    return "\n".join(lines)


# -- the run (needs an NVIDIA GPU) ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    def __init__(self, home: Path, load_seconds: float) -> None:
        self.home = home
        self.load_seconds = load_seconds
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_FAKE_GPUS"}
        self.env.update(WORKBENCH_HOME=str(home), WORKBENCH_PORT=str(self.port),
                        WORKBENCH_AGENT_PORT=str(_free_port()), NO_COLOR="1", COLUMNS="200")
        self.url = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "workbench", *args], env=self.env, text=True,
                                capture_output=True, timeout=timeout)
        took = time.monotonic() - started
        print(f"  $ workbench {' '.join(args)}  ({took:.0f} s, exit {result.returncode})", flush=True)
        if result.returncode != 0:
            raise RuntimeError(f"workbench {' '.join(args)} exited {result.returncode}:\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def gpus(self) -> GpuReport:
        import httpx

        token = (self.home / "controller" / "token").read_text().strip()
        response = httpx.get(f"{self.url}/v1/hosts/local/gpus", params={"history": "true"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
        response.raise_for_status()
        return GpuReport.model_validate(response.json())

    def agent_cost(self) -> str:
        """The sampler's CPU share (its own counter, per sample at 1 Hz) and the agent's RSS."""
        import httpx
        import psutil

        config = json.loads((self.home / "agent" / "config.json").read_text())
        text = httpx.get(f"http://127.0.0.1:{config['port']}/metrics", timeout=10,
                         headers={"Authorization": f"Bearer {config['token']}"}).text
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("workbench_gpu_sampler_cpu_seconds_total", "workbench_gpu_sampler_samples_total"):
                values[name] = float(value)
        cpu = values.get("workbench_gpu_sampler_cpu_seconds_total")
        samples = values.get("workbench_gpu_sampler_samples_total")
        pid = int((self.home / "agent" / "agent.pid").read_text().strip())
        rss = psutil.Process(pid).memory_info().rss / 2**20
        share = "N/A" if not cpu or not samples else f"{100 * cpu / samples:.3f} % of one core"
        return f"sampler CPU (NVML, 1 Hz): {share} over {samples or 0:.0f} samples; agent RSS {rss:.1f} MiB"

    def load(self, clients: int = 8) -> tuple[int, list[str], set[str]]:
        import httpx

        stop = threading.Event()
        lock = threading.Lock()
        counts = {"ok": 0}
        wrong: list[str] = []
        devices: set[str] = set()

        def worker() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    body: Any = None
                    try:
                        r = client.post(f"{self.url}/{API}", json={"pixels": DIGIT_ZERO})
                        why = f"HTTP {r.status_code}: {r.text[:200]}"
                        body = r.json() if r.status_code == 200 else None
                    except (httpx.HTTPError, ValueError) as error:
                        why = repr(error)
                    with lock:
                        if isinstance(body, dict) and body.get("digit") == 0:
                            counts["ok"] += 1
                            devices.add(str(body.get("device")))
                        else:
                            wrong.append(why if body is None else f"answer {body}")

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(self.load_seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        return counts["ok"] + len(wrong), wrong, devices

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.cli("delete", API, timeout=120)
        with contextlib.suppress(Exception):
            self.cli("controller", "stop", timeout=60)
        with contextlib.suppress(Exception):
            self.cli("agent", "stop", timeout=60)
        for pidfile in (self.home / "agent" / "agent.pid",):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        for meta in (self.home / "agent" / "replicas").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                pid = json.loads(meta.read_text()).get("pid")
                if pid:
                    os.killpg(int(pid), signal.SIGKILL)


def project(root: Path) -> Path:
    """examples/digits-torch with compute.gpu: 1 (the example itself asks for no GPU)."""
    folder = root / API
    shutil.copytree(REPO / "examples" / API, folder, ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    spec = folder / "workbench.yaml"
    text = spec.read_text()
    if "compute:\n" not in text:
        raise RuntimeError("examples/digits-torch/workbench.yaml has no compute block to extend")
    spec.write_text(text.replace("compute:\n", "compute:\n  gpu: 1\n", 1))
    return folder


def run(load_seconds: float = 30.0) -> tuple[str, bool]:
    from workbench.agent.gpu.nvml import NvmlProbe, NvmlUnavailable

    try:
        probe = NvmlProbe()
    except NvmlUnavailable as error:
        return f"no NVIDIA driver: nothing to check ({error})", True
    before = probe.read()
    versions = (f"driver {probe.driver_version}, NVML {probe.nvml_version}, "
                f"CUDA driver {probe.cuda_driver_version}")
    probe.close()
    gpu0 = next((g for g in before.gpus if g.info.index == 0), None)
    if gpu0 is None:
        return f"NVML answers ({versions}) but lists no GPU 0", False
    facts = [versions, f"GPU 0: {gpu0.info.name} {gpu0.info.uuid}, {_mib(gpu0.info.memory_total_bytes)} MiB",
             f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(tmp)
        r = Run(root / "home", load_seconds)
        try:
            started = time.monotonic()
            print("deploying examples/digits-torch with compute.gpu: 1 (process runtime)…", flush=True)
            deployed = json.loads(r.cli("deploy", str(project(root)), "--runtime", "process", "--json",
                                        timeout=420))
            facts.append(f"deploy took {time.monotonic() - started:.0f} s: {deployed[0].get('endpoint')}")
            detail = json.loads(r.cli("get", API, "--json"))
            [replica] = [x for x in detail["replica_list"] if x["state"] == "ready"]
            idle_from = time.time()
            time.sleep(6)
            load_from = time.time()
            print(f"sending load for {load_seconds:.0f} s…", flush=True)
            answers, wrong, devices = r.load()
            load_to = time.time()
            time.sleep(1.5)  # the sampler's last second of load
            report = r.gpus()
            host_view = r.cli("host", "show", "local")
            try:
                facts.append(r.agent_cost())
            except Exception as error:  # a measurement, not a check
                facts.append(f"sampler cost: not measured ({error})")
        finally:
            r.cleanup()
    obs = Observed(replica_id=replica["id"], gpu_ids=replica["gpu_ids"],
                   before_memory_used=gpu0.info.memory_used_bytes, idle_from=idle_from,
                   load_from=load_from, load_to=load_to, report=report, answers=answers, wrong=wrong,
                   devices=devices)
    checks = evaluate(obs)
    span = load_to - load_from
    facts.append(f"{answers} requests in {span:.1f} s ({answers / span:.0f}/s)")
    text = summary(checks, facts) + "\n\n`workbench host show local` after the load:\n" + host_view
    return text, all(c.ok for c in checks)


def main() -> int:
    seconds = float(os.environ.get("GPU_CHECK_LOAD_SECONDS", "30"))
    try:
        text, ok = run(seconds)
    except Exception as error:  # the summary must say what broke, never a bare traceback only
        import traceback

        text, ok = f"gpu-check: FAILED to run: {error}\n{traceback.format_exc()}", False
    print(text, flush=True)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu-check.txt").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run wrk (Debian's `wrk`) against one URL with a POST body and parse its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int

    def line(self) -> str:
        return (f"{self.requests_per_second:8.0f} req/s  p50 {self.p50_ms:6.2f} ms  "
                f"p99 {self.p99_ms:6.2f} ms  ({self.requests} requests, {self.errors} errors)")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is needed for the benchmarks: apt-get install wrk")
    return path


def run_wrk(url: str, *, body: str, connections: int, seconds: int, threads: int = 1) -> LoadResult:
    wrk = require_wrk()
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        if "]==]" in body:
            raise ValueError("the request body must not contain ]==]")
        script.write_text(_LUA.format(body=body))
        output = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    parsed = {k: re.match(r"([\d.]+)(\w+)", v).groups() for k, v in latency.items()}  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    for match in re.finditer(r"(connect|read|write|timeout) (\d+)", output):
        errors += int(match.group(2))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return LoadResult(rate, _ms(*parsed["50"]), _ms(*parsed["99"]), total, errors)

"""The cost of reaching a replica through SSH: direct connection vs Paramiko forward vs OpenSSH
`ssh -N -L` forward (pinned to the same verified host key), for 100 B and 1 MB POST payloads to an
`echo` replica, side by side in one run.

    .venv/bin/python bench/tunnel.py [--seconds 5] [--connections 8] [--write]

Needs root (it starts a throwaway sshd box with its own user, like the tests) and wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.remote.connection import SSHHost  # noqa: E402
from workbench.remote.hostkeys import KnownHosts  # noqa: E402
from workbench.remote.openssh import OpenSSHForward  # noqa: E402
from workbench.remote.sshconfig import resolve  # noqa: E402

from bench.report import write_section  # noqa: E402
from bench.wrk import LoadResult, require_wrk, run_wrk  # noqa: E402
from tests.support.sshd import sshd_boxes, sshd_missing  # noqa: E402
from workbench.wire.replica import RUNTIME_CONFIG_ENV, RuntimeConfig, ServingConfig  # noqa: E402

PAYLOADS = {"100 B": json.dumps({"text": "x" * 88}), "1 MB": json.dumps({"text": "x" * 1_000_000})}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def echo_replica():  # type: ignore[no-untyped-def]
    """`python -m workbench.serving` with examples/echo on 127.0.0.1 (the box's loopback here)."""
    port = _free_port()
    config = RuntimeConfig(api="echo", project_dir=str(REPO / "examples" / "echo"),
                           serving=ServingConfig(max_concurrency=64, max_queue=1024))
    env = dict(os.environ, **{RUNTIME_CONFIG_ENV: config.model_dump_json()})
    process = subprocess.Popen([sys.executable, "-m", "workbench.serving", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(30)


def measure(url: str, body: str, args: argparse.Namespace) -> LoadResult:
    run_wrk(url, body=body, connections=args.connections, seconds=1)  # warm-up
    return run_wrk(url, body=body, connections=args.connections, seconds=args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    require_wrk()
    if (reason := sshd_missing()) is not None:
        raise SystemExit(f"bench/tunnel.py starts an sshd box: {reason}")
    rows: list[tuple[str, str, LoadResult]] = []
    with tempfile.TemporaryDirectory() as folder, sshd_boxes(1) as [box], echo_replica() as port:
        known = KnownHosts([Path(folder) / "known"], Path(folder) / "wb-known")
        settings = resolve(box.target, identity=box.client_key, config_path=Path(folder) / "none")
        with SSHHost(settings, known_hosts=known, trust=box.fingerprint()).connect() as host:
            openssh = OpenSSHForward(host.verified_keys(), "127.0.0.1", port)
            try:
                ways = {"direct": port, "paramiko forward": host.forward("127.0.0.1", port),
                        "openssh ssh -L": openssh.port}
                for size, body in PAYLOADS.items():
                    for way, local in ways.items():
                        result = measure(f"http://127.0.0.1:{local}/", body, args)
                        print(f"{size:6s} {way:17s} {result.line()}", flush=True)
                        rows.append((size, way, result))
            finally:
                openssh.close()
    tunnels = [(way, sum(r.requests_per_second for s, w, r in rows if w == way))
               for way in ("paramiko forward", "openssh ssh -L")]
    fastest = max(tunnels, key=lambda item: item[1])[0]
    print(f"fastest tunnel (summed req/s over both payloads): {fastest}")
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        table = ["| payload | path | requests/s | p50 | p99 | errors |", "|---|---|---|---|---|---|"]
        table += [f"| {size} | {way} | {r.requests_per_second:.0f} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms "
                  f"| {r.errors} |" for size, way, r in rows]
        body = "\n".join([
            "## SSH tunnel cost (`bench/tunnel.py`)", "",
            f"One `echo` replica (process, `max_concurrency` 64), wrk with {args.connections} connections "
            f"for {args.seconds} s per row; sshd and replica on the same machine ({machine}), so the "
            f"direct row is the tunnel-free ceiling. Measured {datetime.now(UTC):%Y-%m-%d}.", "",
            *table, "",
            f"Fastest tunnel that keeps host-key verification: **{fastest}** "
            "(both tunnels verify the same pinned host key).",
        ])
        write_section("tunnel", body)


if __name__ == "__main__":
    main()

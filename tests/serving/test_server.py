"""workbench.serving.server: graceful drain on SIGTERM, exit codes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import wait_until

SLOW = """
import time
from pathlib import Path

class Predictor:
    def __init__(self, config):
        self.dir = Path(config["dir"])
    def predict(self, payload):
        (self.dir / "started").touch()
        time.sleep(payload)
        return {"slept": payload}
"""


def test_sigterm_drains_in_flight_then_exits_0(replica: Callable[..., Any], tmp_path: Path) -> None:
    rep = replica(SLOW, config={"dir": str(tmp_path)}, serving={"graceful_shutdown": 30})
    result: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            result["response"] = httpx.post(rep.url + "/", json=1.5, timeout=60)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 30, "predict started")
        rep.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in rep.stderr(), 30, "drain log line")

        def refused() -> bool:
            try:
                httpx.get(rep.url + "/healthz", timeout=2)
            except httpx.ConnectError:
                return True
            except httpx.TransportError:
                return False
            return False

        wait_until(refused, 30, "new connections refused")
    finally:
        thread.join(60)
    assert "error" not in result, result
    assert result["response"].status_code == 200
    assert result["response"].json() == {"slept": 1.5}
    assert rep.wait_exit(60) == 0, rep.stderr()


def test_sigterm_when_idle_exits_0(replica: Callable[..., Any], tmp_path: Path) -> None:
    rep = replica(SLOW, config={"dir": str(tmp_path)})
    rep.proc.send_signal(signal.SIGTERM)
    assert rep.wait_exit(60) == 0
    assert "stopped" in rep.stderr()


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_exits_0(replica: Callable[..., Any], tmp_path: Path, sig: int) -> None:
    rep = replica(SLOW, config={"dir": str(tmp_path)})
    rep.proc.send_signal(sig)
    assert rep.wait_exit(60) == 0


def test_graceful_shutdown_bounded(replica: Callable[..., Any], tmp_path: Path) -> None:
    """A request longer than graceful_shutdown does not keep the replica alive."""
    rep = replica(SLOW, config={"dir": str(tmp_path)}, serving={"graceful_shutdown": 1})
    thread = threading.Thread(target=lambda: httpx.post(rep.url + "/", json=30, timeout=60), daemon=True)
    thread.start()
    wait_until(lambda: (tmp_path / "started").exists(), 30, "predict started")
    rep.proc.send_signal(signal.SIGTERM)
    assert rep.wait_exit(20) == 0

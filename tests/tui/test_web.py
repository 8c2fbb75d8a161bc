"""`workbench web`: the TUI served in a browser by textual-serve (a real subprocess, its own home)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.support.real_parts import free_port

T = TypeVar("T")


@contextlib.contextmanager
def web(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`python -m workbench web ARGS` with stderr in a file; killed (its whole group) afterwards."""
    err = home / "web.err"
    env = dict(os.environ, WORKBENCH_HOME=str(home / "home"), NO_COLOR="1")
    with err.open("w") as stderr, (home / "web.out").open("w") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "workbench", "web", *args], env=env,
                                   stdout=stdout, stderr=stderr, text=True,
                                   start_new_session=True)
    try:
        yield process, err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def poll(condition: Callable[[], T | None], process: subprocess.Popen[str], err: Path, timeout: float,
         what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"workbench web exited {process.returncode}:\n{err.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{err.read_text()}")


def test_web_serves_the_app_page_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    with web(tmp_path, "--port", str(port)) as (process, err):
        def page() -> httpx.Response | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            except httpx.HTTPError:
                return None
            return response if response.status_code == 200 else None

        response = poll(page, process, err, 60, "the page")
        assert "text/html" in response.headers["content-type"]
        assert "textual.js" in response.text and "<div>workbench</div>" in response.text
        assert f"http://127.0.0.1:{port}/static/" in response.text
        assert "warning" not in err.read_text()


def test_web_warns_on_a_non_loopback_host(tmp_path: Path) -> None:
    with web(tmp_path, "--host", "0.0.0.0", "--port", str(free_port())) as (process, err):
        poll(lambda: "controls the fleet" in err.read_text(), process, err, 60, "the warning")
    assert "warning: serving on 0.0.0.0: anyone who can reach" in err.read_text()


def test_web_says_where_to_point_a_browser(tmp_path: Path) -> None:
    """Its banner names the address, not the interpreter and module it runs per tab."""
    port = free_port()
    out = tmp_path / "web.out"
    with web(tmp_path, "--port", str(port)) as (process, err):
        banner = poll(lambda: "Ctrl+C" in out.read_text() and out.read_text(), process, err, 60, "the banner")
    assert (f"workbench web UI on http://127.0.0.1:{port} (each browser tab runs its own terminal UI "
            in banner)
    assert "Serving" not in banner and sys.executable not in banner

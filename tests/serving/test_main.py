"""``python -m workbench.serving``: arguments, config from the environment, exit codes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.wire.replica import RUNTIME_CONFIG_ENV

from .conftest import Replica, config_json, spawn, stop, wait_until, write_project

OK = "class Predictor:\n    def predict(self, payload):\n        return 'ok'\n"


def run_to_exit(tmp_path: Path, args: list[str], env_config: str | None) -> tuple[int, str]:
    err = tmp_path / "stderr.txt"
    proc = spawn(args, env_config, err)
    try:
        code = proc.wait(timeout=60)
    finally:
        stop(proc)
    return code, err.read_text()


def test_missing_config_exits_2(tmp_path: Path) -> None:
    code, err = run_to_exit(tmp_path, ["--port", "0"], None)
    assert code == 2
    assert RUNTIME_CONFIG_ENV in err and "not set" in err


@pytest.mark.parametrize(
    "raw", ["{not json", '{"api": "a"}', '{"api": "a", "project_dir": "/x", "bogus": 1}', "[]"]
)
def test_invalid_config_exits_2(tmp_path: Path, raw: str) -> None:
    code, err = run_to_exit(tmp_path, ["--port", "0"], raw)
    assert code == 2
    assert f"invalid ${RUNTIME_CONFIG_ENV}" in err


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    """With a valid config, so the argument alone is what fails."""
    valid = config_json(write_project(tmp_path / "proj", OK))
    code, err = run_to_exit(tmp_path, ["--port", "1", "--fd", "3"], valid)
    assert code == 2 and "not allowed with" in err
    for port in ("70000", "-1"):
        code, err = run_to_exit(tmp_path, ["--port", port], valid)
        assert code == 2 and f"--port must be 0..65535, not {port}" in err, (port, code, err)


@pytest.mark.parametrize(
    ("code", "summary"),
    [
        ("import no_such_module_abc\n", "ModuleNotFoundError: No module named 'no_such_module_abc'"),
        (
            "class Predictor:\n    def __init__(self, config):\n        raise RuntimeError('no weights')\n"
            "    def predict(self, payload): ...\n",
            "RuntimeError: no weights",
        ),
        ("class Other: pass\n", "LoadError: no class Predictor or PythonPredictor"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_load_failure_exits_3(tmp_path: Path, code: str, summary: str) -> None:
    project = write_project(tmp_path / "proj", code)
    rc, err = run_to_exit(tmp_path, ["--port", "0"], config_json(project))
    assert rc == 3, err
    assert "Traceback (most recent call last)" in err
    assert f"workbench: predictor failed to load: {summary}" in err


def test_missing_project_dir_exits_3(tmp_path: Path) -> None:
    rc, err = run_to_exit(tmp_path, ["--port", "0"], config_json(tmp_path / "absent"))
    assert rc == 3 and "workbench: predictor failed to load: FileNotFoundError" in err


def test_startup_timeout_exits_3(tmp_path: Path) -> None:
    code = "import time\nclass Predictor:\n    def __init__(self):\n        time.sleep(60)\n"
    project = write_project(tmp_path / "proj", code)
    rc, err = run_to_exit(tmp_path, ["--port", "0"], config_json(project, serving={"startup_timeout": 0.5}))
    assert rc == 3
    assert "predictor failed to load: TimeoutError: not loaded within startup_timeout" in err


def test_port_in_use_exits_4(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", OK)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, err = run_to_exit(tmp_path, ["--port", str(port)], config_json(project))
    assert rc == 4 and "cannot listen" in err


def test_serves_on_port_with_replica_id(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", OK)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = tmp_path / "stderr.txt"
    proc = spawn(
        ["--host", "127.0.0.1", "--port", str(port), "--replica-id", "r-7"], config_json(project), err
    )
    try:
        rep = Replica(proc, f"http://127.0.0.1:{port}", port, err)
        rep.wait_ready()
        assert httpx.post(rep.url + "/", timeout=10).text == "ok"
        wait_until(lambda: "[r-7]" in err.read_text(), 10, "replica id in logs")
    finally:
        stop(proc)


def test_cwd_is_project_dir(replica: Callable[..., Any]) -> None:
    code = "import os\nclass Predictor:\n    def predict(self, payload):\n        return os.getcwd()\n"
    rep = replica(code)
    with rep.client() as client:
        assert Path(client.post("/").text).name == "p0"


def test_readyz_while_loading_over_http(replica: Callable[..., Any], tmp_path: Path) -> None:
    gate = tmp_path / "go"
    code = f"""
    import time
    from pathlib import Path
    class Predictor:
        def __init__(self):
            while not Path({str(gate)!r}).exists():
                time.sleep(0.01)
        def predict(self, payload):
            return "ok"
    """
    rep = replica(code, ready=False)

    def up() -> bool:
        try:
            return httpx.get(rep.url + "/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "healthz")
    response = httpx.get(rep.url + "/readyz", timeout=5)
    assert response.status_code == 503
    assert response.json() == {"ready": False, "state": "loading"}
    gate.touch()
    rep.wait_ready()
    assert httpx.post(rep.url + "/", timeout=10).text == "ok"


def test_user_error_then_next_request_over_http(replica: Callable[..., Any]) -> None:
    code = """
    class Predictor:
        def predict(self, payload):
            if payload == b"boom":
                raise ZeroDivisionError("division by zero")
            return "fine"
    """
    rep = replica(code)
    with rep.client() as client:
        response = client.post("/", content=b"boom")
        assert response.status_code == 500
        assert response.json() == {"error": "ZeroDivisionError: division by zero"}
        assert client.post("/", content=b"x").text == "fine"
    assert "ZeroDivisionError" in rep.stderr() and "Traceback" in rep.stderr()

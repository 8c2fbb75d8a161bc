"""The CLI's surface: bad input gets a clear error and changes nothing; faults name the fix."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

from tests.controller.helpers import Controller
from tests.support.real_parts import EXAMPLES, Workbench


def write_project(folder: Path, spec: str, predictor: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workbench.yaml").write_text(textwrap.dedent(spec))
    (folder / "predictor.py").write_text(textwrap.dedent(predictor))
    return folder


def test_version_and_help(workbench: Workbench) -> None:
    assert "workbench" in workbench.run("--version").stdout
    helped = workbench.run("--help").stdout
    for command in ("deploy", "get", "predict", "logs", "scale", "delete", "serve", "hosts", "events",
                    "agent", "controller", "image"):
        assert command in helped


def test_invalid_spec_deploys_nothing(workbench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "bad", "name: bad\nserving:\n  max_concurency: 2\n",
                            "class Predictor:\n    def predict(self, payload):\n        return 1\n")
    result = workbench.run("deploy", str(project), check=False)
    assert result.returncode == 2
    assert "workbench.yaml:3: serving.max_concurency: unknown field" in result.stderr
    assert "nothing was deployed" in result.stderr
    assert not (workbench.home / "controller" / "controller.json").exists(), "nothing may start"


def test_a_refused_deploy_reads_the_same_with_a_controller_running(workbench: Workbench,
                                                                    tmp_path: Path) -> None:
    """Without a controller the CLI checks the request first (so nothing starts); with one, the
    controller's 400 says the same: one line per problem, exit code 2, nothing on stdout."""
    bad = write_project(tmp_path / "bad", "name: bad\nreplicas: -1\nserving:\n  max_concurency: 2\n",
                        "class Predictor:\n    def predict(self, payload):\n        return 1\n")
    good = write_project(tmp_path / "good", "name: good\nruntime: process\n",
                         "class Predictor:\n    def predict(self, payload):\n        return 1\n")
    file = bad / "workbench.yaml"
    cases = {
        "spec": (("deploy", str(bad)), [
            "error: invalid spec; nothing was deployed",
            f"  │ {file}:2: replicas: Input should be greater than or equal to 0",
            f"  │ {file}:4: serving.max_concurency: unknown field (check the spelling"]),
        "json": (("deploy", str(bad), "--json"), None),
        "api": (("deploy", str(good), "--api", "nope", "--api", "good", "--api", "else"),
                [f"error: no API named else, nope in {good / 'workbench.yaml'}"]),
        "path": (("deploy", str(tmp_path / "nowhere")), [
            "error: invalid spec; nothing was deployed",
            f"  │ {tmp_path / 'nowhere'}: no such file or folder"]),
    }
    cold = {name: workbench.run(*args, check=False) for name, (args, _) in cases.items()}
    assert not (workbench.home / "controller" / "controller.json").exists(), "nothing may start"
    ctl = Controller(workbench)
    ctl.start()
    try:
        for name, (args, expected) in cases.items():
            warm = workbench.run(*args, check=False)
            assert (warm.returncode, warm.stdout, warm.stderr) == (2, cold[name].stdout,
                                                                   cold[name].stderr), name
            assert cold[name].returncode == 2
            assert name == "json" or cold[name].stdout == ""  # under --json: the error as JSON
            if expected is not None:  # today's words, in today's order
                lines = warm.stderr.splitlines()
                starts = [next(i for i, line in enumerate(lines) if line.startswith(want))
                          for want in expected]
                assert starts == sorted(starts) and starts[0] == 0, lines
        assert cold["json"].stderr == cold["spec"].stderr
        assert json.loads(cold["json"].stdout)["error"] == "invalid spec; nothing was deployed"
        assert workbench.json("get") == []
    finally:
        ctl.stop()


def test_bad_arguments(workbench: Workbench) -> None:
    result = workbench.run("deploy", str(EXAMPLES / "echo"), "--runtime", "k8s", check=False)
    assert result.returncode == 2 and "--runtime must be docker or process" in result.stderr
    result = workbench.run("predict", "echo", "{not json", check=False)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    result = workbench.run("predict", "echo", "@/nonexistent/file.json", check=False)
    assert result.returncode == 2 and "no such file" in result.stderr
    result = workbench.run("logs", "echo", "--tail", "-1", check=False)
    assert result.returncode == 2
    result = workbench.run("scale", "echo", check=False)
    assert result.returncode == 2 and "--replicas" in result.stderr
    result = workbench.run("scale", "echo", "--replicas", "-3", check=False)
    assert result.returncode == 2


def test_commands_without_controller_say_so(workbench: Workbench) -> None:
    for args in (("predict", "echo", "{}"), ("logs", "echo"), ("delete", "echo"), ("hosts",)):
        result = workbench.run(*args, check=False)
        assert result.returncode == 1
        assert "no controller is running" in result.stderr
    assert workbench.run("get").returncode == 0
    assert workbench.json("get") == []


def test_controller_port_taken(workbench: Workbench) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", workbench.port))
        squatter.listen()
        result = workbench.run("deploy", str(EXAMPLES / "echo"), check=False)
    assert result.returncode == 1
    assert str(workbench.port) in result.stderr and "WORKBENCH_PORT" in result.stderr


def test_docker_missing_suggests_process_runtime(workbench: Workbench, tmp_path: Path) -> None:
    workbench.env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    result = workbench.run("deploy", str(EXAMPLES / "echo"), "--runtime", "docker", check=False)
    assert result.returncode == 1
    assert "Docker is not available" in result.stderr and "runtime process" in result.stderr
    assert workbench.json("get") == []


def test_process_runtime_lifecycle_and_errors(workbench: Workbench, tmp_path: Path) -> None:
    """auto runtime without Docker → process; predictor errors; logs; get; delete."""
    workbench.env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    project = write_project(tmp_path / "picky", "name: picky\n", """
        class Predictor:
            def __init__(self, config):
                print("picky loaded", flush=True)

            def predict(self, payload):
                if "x" not in payload:
                    raise ValueError("payload needs x")
                return {"double": payload["x"] * 2}
    """)
    deployed = workbench.run("deploy", str(project))
    assert "process runtime" in deployed.stderr
    assert f"picky deployed (process): POST {workbench.url}/picky" in deployed.stdout

    answer = workbench.json("predict", "picky", '{"x": 21}')
    assert answer["status"] == 200 and answer["body"] == {"double": 42}  # type: ignore[index]
    assert answer["replica"]  # type: ignore[index]
    rejected = workbench.run("predict", "picky", '{"y": 1}', "--json", check=False)
    assert rejected.returncode == 1
    assert "payload needs x" in json.loads(rejected.stdout)["body"]["error"]
    assert workbench.json("predict", "picky", '{"x": 1}')["status"] == 200  # type: ignore[index]
    unknown = workbench.run("predict", "nosuch", "{}", "--json", check=False)
    assert unknown.returncode == 1 and "picky" in unknown.stdout  # the router lists known APIs

    assert "picky loaded" in workbench.run("logs", "picky").stdout
    missing = workbench.run("get", "nosuch", check=False)
    assert missing.returncode == 1 and "nosuch" in missing.stderr

    table = workbench.run("get").stdout
    assert "picky" in table and "live" in table
    detail = workbench.json("get", "picky")
    assert detail["replica_list"][0]["state"] == "ready"  # type: ignore[index]
    assert "local" in workbench.run("hosts").stdout
    assert any(e["api"] == "picky" for e in workbench.json("events"))  # type: ignore[union-attr]

    workbench.run("delete", "picky")
    assert workbench.json("get") == []


def test_predictor_failing_at_start_deploys_nothing(workbench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "broken", "name: broken\nruntime: process\n", """
        class Predictor:
            def __init__(self, config):
                raise RuntimeError("weights file is corrupt")

            def predict(self, payload):
                return payload
    """)
    result = workbench.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert "weights file is corrupt" in result.stderr  # the replica's log tail is shown
    assert workbench.json("get") == []


def test_changed_spec_rolls_out(workbench: Workbench, tmp_path: Path) -> None:
    spec = "name: versioned\nruntime: process\npredictor:\n  config: {version: %d}\n"
    code = """
        class Predictor:
            def __init__(self, config):
                self.version = config["version"]

            def predict(self, payload):
                return self.version
    """
    project = write_project(tmp_path / "v", spec % 1, code)
    workbench.run("deploy", str(project))
    assert workbench.json("predict", "versioned", "{}")["body"] == 1  # type: ignore[index]
    (project / "workbench.yaml").write_text(spec % 2)
    second = json.loads(workbench.run("deploy", str(project), "--json").stdout)[0]
    assert second["replaced"] == 1 and second["built"] is False
    assert workbench.json("predict", "versioned", "{}")["body"] == 2  # type: ignore[index]
    scaled = workbench.run("scale", "versioned", "--replicas", "2", "--json")
    assert json.loads(scaled.stdout)["replicas"]["requested"] == 2

"""The README's five-minute tour, run as written (issue 14): its files are examples/greeter, every
command succeeds in order, and its three replicas fit on a 2-core machine."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import yaml

from tests.cli.test_newcomer import ctrl_c_works
from tests.support.real_parts import REPO, Workbench, require_docker, wait_until

README = (REPO / "README.md").read_text()
TOUR = README[README.index("## A five-minute tour"):README.index("From Python (any app")]
#: commands that run until Ctrl-C
FOREVER = (" -w", " -f")


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", TOUR, re.DOTALL)


def test_the_tours_files_are_the_greeter_example() -> None:
    python, = blocks("python")
    spec, = blocks("yaml")
    assert python == (REPO / "examples" / "greeter" / "predictor.py").read_text()
    assert spec == (REPO / "examples" / "greeter" / "workbench.yaml").read_text()


def test_the_tours_replicas_fit_on_two_cores() -> None:
    spec = yaml.safe_load(blocks("yaml")[0])
    scaled = max(int(n) for n in re.findall(r"scale greeter --replicas (\d+)", TOUR))
    assert scaled * float(spec["compute"]["cpu"]) <= 2, "the tour must fit a 2-core machine"


def test_the_tour_runs_as_written(workbench: Workbench) -> None:
    require_docker()  # `runtime` is auto: the tour builds an image where Docker is
    commands = [line for line in blocks("bash")[-1].splitlines() if line.strip()]
    assert commands[0].startswith(".venv/bin/workbench deploy examples/greeter")
    env = {k: v for k, v in workbench.env.items() if k != "COLUMNS"}
    for command in commands:
        # the test's controller has a port of its own; the tour's curl names the default one
        command = command.replace("127.0.0.1:8765", f"127.0.0.1:{workbench.port}")
        if any(flag in command.split("#")[0] for flag in FOREVER):
            process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       preexec_fn=ctrl_c_works)
            time.sleep(5)
            process.send_signal(signal.SIGINT)  # the reader's Ctrl-C
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, (command, err)
            assert "greeter" in out, (command, out)
            continue
        result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        if "curl" in command:
            assert json.loads(result.stdout) == {"message": "hi, Ada"}
        if "scale greeter" in command:
            assert "warning" not in result.stderr, result.stderr  # room for all three
            wait_until(lambda: workbench.json("get", "greeter")["replicas"]["ready"] == 3,  # type: ignore[index]
                       120, what="three greeter replicas ready")
    assert workbench.json("get") == []

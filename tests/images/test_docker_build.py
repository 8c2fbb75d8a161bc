"""A real `docker build` of a generated context, offline, FROM the base image scripts/setup made
available (pulled python:3.11-slim, or the bootstrapped one)."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.images.conftest import MakeProject
from tests.support.base_image import available_base_image, built_from
from workbench.images.context import make_context
from workbench.images.plan import plan_build
from workbench.wire.replica import RUNTIME_CONFIG_ENV, RuntimeConfig

pytestmark = pytest.mark.docker


def test_offline_build_and_run(make_project: MakeProject, tmp_path: Path) -> None:
    base = available_base_image()
    loaded = make_project({"name": "imgtest", "image": {"base": base, "offline": True}},
                          {"helper.py": "VALUE = 42\n"})
    with make_context(plan_build(loaded, "docker"), directory=tmp_path) as context:
        tag = context.artifact
        try:
            with context.open() as body:
                built = subprocess.run(["docker", "build", "--network", "none", "-t", tag, "-"],
                                       stdin=body, capture_output=True, text=True, timeout=600)
            assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
            labels = subprocess.run(["docker", "image", "inspect", "--format",
                                     "{{json .Config.Labels}}", tag],
                                    capture_output=True, text=True, check=True).stdout
            assert json.loads(labels)["workbench.image-hash"] == context.image_hash
            assert built_from(tag, base)
            config = RuntimeConfig(api="imgtest", project_dir="/app").model_dump_json()
            ran = subprocess.run(
                ["docker", "run", "--rm", "--network", "none", "-e", f"{RUNTIME_CONFIG_ENV}={config}",
                 tag, "python", "-c",
                 "import os, workbench.serving, fastapi, helper; "
                 "print(helper.VALUE, os.getcwd(), os.getuid(), workbench.serving.__file__)"],
                capture_output=True, text=True, timeout=120)
            assert ran.returncode == 0, ran.stderr
            value, cwd, uid, where = ran.stdout.split()
            assert (value, cwd, uid) == ("42", "/app", "10001")
            assert where.startswith("/opt/workbench/lib/workbench/serving/")
        finally:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)

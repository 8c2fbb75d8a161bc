"""`container:` in workbench.yaml: good sections load with their defaults; every bad one names the
file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.spec import SpecError, load_specs
from workbench.spec.models import ApiSpec


def project(tmp_path: Path, spec: str, dockerfile: str | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent(spec))
    if dockerfile is not None:
        (tmp_path / dockerfile).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / dockerfile).write_text("FROM scratch\n")
    return tmp_path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_specs(path)
    return [str(problem) for problem in caught.value.problems]


def test_an_image_container_gets_its_defaults_and_no_predictor(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path, "name: llm\ncontainer: {image: vllm/vllm-openai:v0.6.3}\n"))
    spec = loaded.spec
    assert spec.predictor is None and spec.container is not None
    container = spec.container
    assert container.image == "vllm/vllm-openai:v0.6.3" and container.build is None
    assert container.port == 8080 and container.command is None and container.args is None
    assert container.health.path == "/health" and container.health.port is None
    assert container.health.timeout == 1.0 and container.health.period == 1.0
    assert container.startup_timeout == 600 and spec.startup_timeout == 600
    assert container.shm_size is None and container.env == {}


def test_every_field_of_a_build_container(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path, """
        name: tiny
        container:
          build: docker/Dockerfile
          command: python -u server.py --name 'a b'
          args: [--port, $PORT, 7]
          env: {MODEL: small, THREADS: 4}
          port: 9000
          shm_size: 2Gi
          health: {path: /v1/models, port: 9001, timeout: 3, period: 5}
          startup_timeout: 1200
        serving: {max_concurrency: 16, graceful_shutdown: 5}
        image: {offline: true}
        compute: {gpu: 1}
    """, dockerfile="docker/Dockerfile"))
    container = loaded.spec.container
    assert container is not None
    assert container.build == "docker/Dockerfile"
    assert container.command == ["python", "-u", "server.py", "--name", "a b"]  # split as a shell would
    assert container.args == ["--port", "$PORT", "7"]
    assert container.env == {"MODEL": "small", "THREADS": "4"}
    assert container.port == 9000 and container.shm_size == 2 * 2**30
    assert container.health.model_dump() == {"path": "/v1/models", "port": 9001, "timeout": 3, "period": 5}
    assert loaded.spec.startup_timeout == 1200


def test_health_as_a_path_and_a_command_for_the_process_runtime(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path, """
        name: cmd
        runtime: process
        container: {command: [python, server.py], health: /ping}
    """))
    container = loaded.spec.container
    assert container is not None and container.health.path == "/ping" and container.image is None


def test_a_stored_container_spec_reads_back_the_same(tmp_path: Path) -> None:
    """The controller stores model_dump() and validates it again on every pass."""
    [loaded] = load_specs(project(tmp_path, "name: llm\ncontainer: {image: x/y:1, health: /h}\n"
                                            "serving: {max_concurrency: 4}\n"))
    stored = loaded.spec.model_dump(mode="json", by_alias=True)
    assert stored["predictor"] is None
    assert ApiSpec.model_validate(stored) == loaded.spec


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("name: a\npredictor: {path: predictor.py}\ncontainer: {image: x}\n", 3, "container",
     "either predictor or container, not both"),
    ("name: a\ncontainer: {port: 8000}\n", 2, "container", "set container.image"),
    ("name: a\nruntime: docker\ncontainer: {command: [serve]}\n", 3, "container", "container.build"),
    ("name: a\nruntime: process\ncontainer: {image: x}\n", 3, "container", "set command"),
    ("name: a\ncontainer:\n  image: x\n  build: Dockerfile\n", 2, "container", "either image or build"),
    ("name: a\ncontainer:\n  image: x\n  port: 0\n", 4, "container.port", "greater than or equal to 1"),
    ("name: a\ncontainer:\n  image: x\n  port: 70000\n", 4, "container.port", "less than or equal to 65535"),
    ("name: a\ncontainer:\n  image: x\n  shm_size: 512\n", 4, "container.shm_size", "out of range"),
    ("name: a\ncontainer:\n  image: x\n  shm_size: 2Ti\n", 4, "container.shm_size", "out of range"),
    ("name: a\ncontainer:\n  image: x\n  shm_size: lots\n", 4, "container.shm_size", "not a size"),
    ("name: a\ncontainer:\n  image: x\n  health: {port: 0}\n", 4, "container.health.port",
     "greater than or equal to 1"),
    ("name: a\ncontainer:\n  image: x\n  health: health\n", 4, "container.health.path", "starts with '/'"),
    ("name: a\ncontainer:\n  image: x\n  health: {period: 0.1}\n", 4, "container.health.period",
     "greater than or equal to 1"),
    ("name: a\ncontainer:\n  image: x\n  startup_timeout: 0\n", 4, "container.startup_timeout",
     "greater than 0"),
    ("name: a\ncontainer:\n  image: 'bad image'\n", 3, "container.image", "not an image reference"),
    ("name: a\ncontainer:\n  build: ../Dockerfile\n", 3, "container.build", "inside the project folder"),
    ("name: a\ncontainer:\n  image: x\n  env: {PORT: 1}\n", 4, "container.env", "set container.port"),
    ("name: a\ncontainer:\n  image: x\n  command: \"unterminated 'quote\"\n", 4, "container.command",
     "cannot split"),
    ("name: a\ncontainer:\n  image: x\n  entrypoint: [x]\n", 4, "container.entrypoint",
     "unknown field (check the spelling; see the allowed fields in the README); allowed: image, build"),
    ("name: a\ncontainer: {image: x}\nserving: {max_batch_size: 4}\n", 3, "serving",
     "max_batch_size applies to predictors"),
    ("name: a\ncontainer: {image: x}\nserving: {startup_timeout: 5}\n", 3, "serving",
     "use container.startup_timeout"),
    ("name: a\ncontainer: {image: x}\nimage: {base: 'python:3.12'}\n", 3, "image", "image.base applies"),
])
def test_bad_container_sections_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str,
                                                         words: str) -> None:
    folder = project(tmp_path, text)
    [problem] = problems(folder)
    assert problem.startswith(f"{folder / 'workbench.yaml'}:{line}: {field}: "), problem
    assert words in problem, problem


def test_a_missing_dockerfile_names_the_field_and_the_folder(tmp_path: Path) -> None:
    folder = project(tmp_path, "name: a\ncontainer:\n  build: docker/Dockerfile.gpu\n  port: 8000\n")
    [problem] = problems(folder)
    assert problem == (f"{folder / 'workbench.yaml'}:3: container.build: Dockerfile docker/Dockerfile.gpu "
                       f"not found in {folder.resolve()}")


def test_a_container_api_needs_no_predictor_file(tmp_path: Path) -> None:
    """No predictor.py in the folder is fine for a container (a predictor API would fail)."""
    [loaded] = load_specs(project(tmp_path, "name: a\ncontainer: {build: Dockerfile}\n",
                                  dockerfile="Dockerfile"))
    assert loaded.spec.container is not None
    assert "predictor.path" in "\n".join(problems(project(tmp_path / "p", "name: b\n")))

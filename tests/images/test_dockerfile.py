import json

import pytest

from workbench.images.dockerfile import DockerfileInputs, check_base_image, render_dockerfile
from workbench.images.errors import ContextError

HASH = "a" * 64


def _instructions(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_minimal_dockerfile_order() -> None:
    text = render_dockerfile(DockerfileInputs(base_image="python:3.11-slim"), HASH)
    lines = _instructions(text)
    assert lines[0] == "ARG BASE_IMAGE=python:3.11-slim"
    assert lines[1] == "FROM ${BASE_IMAGE}"
    assert lines[-1] == 'CMD ["python", "-m", "workbench.serving", "--host", "0.0.0.0", "--port", "8080"]'
    assert f'LABEL workbench.image-hash="{HASH}"' in lines
    assert "EXPOSE 8080" in lines
    assert "apt-get" not in text and "certs/ca.pem" not in text and "wheelhouse" not in text
    keys = [line.split()[0] for line in lines]
    # dependencies are installed before the project is copied (code edits keep the pip layers)
    assert text.index("/opt/workbench/requirements.txt") < text.index('["project", "/app"]')
    assert keys.count("FROM") == 1


def test_every_run_is_exec_form_with_weird_but_valid_input() -> None:
    inputs = DockerfileInputs(
        base_image="registry.local:5000/team/py@sha256:" + "b" * 64,
        apt=["libgl1", "g++", "python3.11=3.11.2-6"],
        pip=["numpy >= 1.20", "torch[cpu]~=2.1"],
        requirements=["reqs/prod requirements.txt"],
        requirement_copies=["reqs/prod requirements.txt", "reqs/base.txt"],
        build_commands=[["sh", "-c", "echo $HOME; rm -rf / # \"quoted\" \\ back"],
                        ["python", "-c", "print('x')\nprint('y')"]],
        ca_bundle=True, wheelhouse=True, offline=True,
    )
    text = render_dockerfile(inputs, HASH)
    for line in _instructions(text):
        word, _, rest = line.partition(" ")
        if word in ("RUN", "CMD"):
            assert isinstance(json.loads(rest), list), line
        if word == "COPY":
            assert isinstance(json.loads(rest.removeprefix("--chown=10001:10001 ")), list), line
    runs = [json.loads(line[4:]) for line in _instructions(text) if line.startswith("RUN ")]
    assert ["sh", "-c", "echo $HOME; rm -rf / # \"quoted\" \\ back"] in runs
    assert ["python", "-c", "print('x')\nprint('y')"] in runs
    assert ["apt-get", "install", "-y", "--no-install-recommends", "libgl1", "g++",
            "python3.11=3.11.2-6"] in runs
    assert ["python", "-m", "pip", "install", "--no-index", "--find-links", "/opt/wheelhouse",
            "-r", "/app/reqs/prod requirements.txt", "numpy >= 1.20", "torch[cpu]~=2.1"] in runs
    assert 'COPY ["project/reqs/base.txt", "/app/reqs/base.txt"]' in text
    assert "ENV PIP_CERT=/etc/workbench/ca.pem SSL_CERT_FILE=/etc/workbench/ca.pem" in text


def test_wheelhouse_without_offline_keeps_the_index() -> None:
    text = render_dockerfile(DockerfileInputs(base_image="python:3.11-slim", wheelhouse=True,
                                              pip=["requests"]))
    assert '"--find-links", "/opt/wheelhouse"' in text
    assert "--no-index" not in text
    assert "LABEL" not in text


@pytest.mark.parametrize("base", ["python:3.11 slim", "x\nRUN evil", "$(evil)", "py;rm", "", "'q'"])
def test_bad_base_image_rejected(base: str) -> None:
    with pytest.raises(ContextError, match="not a Docker image reference"):
        check_base_image(base)


@pytest.mark.parametrize("path", ["../etc/passwd", "a/$HOME.txt", "a\nb.txt", 'q".txt', "dir/"])
def test_bad_requirement_paths_rejected(path: str) -> None:
    with pytest.raises(ContextError, match="cannot be copied"):
        render_dockerfile(DockerfileInputs(base_image="python:3.11-slim", requirements=[path],
                                           requirement_copies=[path]))


def test_bad_hash_rejected() -> None:
    with pytest.raises(ContextError):
        render_dockerfile(DockerfileInputs(base_image="python:3.11-slim"), "not-a-hash")

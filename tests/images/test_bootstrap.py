import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.real_parts import IN_CI, require_docker
from workbench.images import bootstrap
from workbench.images.bootstrap import (
    DEFAULT_MIRROR,
    BootstrapError,
    bootstrap_base_image,
    ensure_base_image,
    find_debian_mirror,
)


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    (folder / "other.sources.disabled").write_text("Types: deb\nURIs: http://no.example/debian\n")
    assert find_debian_mirror([tmp_path / "sources.list", folder]) == "http://mirror.example/debian"


def test_mirror_from_one_line_list(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text("# deb http://commented.example/debian bookworm main\n"
                       "deb [arch=amd64 signed-by=/k.gpg] https://ftp.example.org/debian bookworm main\n")
    assert find_debian_mirror([sources]) == "https://ftp.example.org/debian"
    assert find_debian_mirror([tmp_path / "nothing"]) == DEFAULT_MIRROR


def _fake_tool(folder: Path, name: str) -> None:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)


def test_debootstrap_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BootstrapError, match="apt-get install debootstrap"):
        bootstrap_base_image(tag="workbench-test/never:1")


def test_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path / "bin", "debootstrap")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 1000)
    with pytest.raises(BootstrapError, match="debootstrap needs root; run with sudo"):
        bootstrap_base_image(tag="workbench-test/never:1")


@pytest.mark.docker
def test_docker_not_reachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = shutil.which("docker")
    if docker is None or os.geteuid() != 0:
        pytest.skip("needs the docker CLI and root")
    _fake_tool(tmp_path / "bin", "debootstrap")
    os.symlink(docker, tmp_path / "bin" / "docker")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(BootstrapError, match="Docker is not reachable"):
        bootstrap_base_image(tag="workbench-test/never:1")


@pytest.mark.parametrize("kwargs, match", [
    ({"suite": "bookworm; rm -rf /"}, "suite"),
    ({"tag": "Bad Tag"}, "tag"),
    ({"mirror": "ftp://x y"}, "mirror"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(BootstrapError, match=match):
        bootstrap_base_image(**kwargs)


@pytest.mark.docker
def test_ensure_returns_an_existing_image() -> None:
    require_docker()
    tag = "workbench-test/ensure-probe:1"
    subprocess.run(["docker", "import", "-", tag], input=_empty_tar(), check=True,
                   capture_output=True)
    try:
        assert ensure_base_image(tag=tag, progress=pytest.fail) == tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def _empty_tar() -> bytes:
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w"):
        pass
    return data.getvalue()


@pytest.mark.slow
@pytest.mark.docker
def test_bootstrap_end_to_end(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        if IN_CI:
            pytest.fail("CI=true but this run cannot bootstrap (needs root and debootstrap)")
        pytest.skip("needs root and debootstrap")
    require_docker()
    tag = "workbench-test/bootstrap:bookworm"
    lines: list[str] = []
    try:
        assert bootstrap_base_image(tag=tag, progress=lines.append, workdir=tmp_path) == tag
        assert any(line.startswith("I: Retrieving") for line in lines)
        assert list(tmp_path.iterdir()) == []  # the Debian tree is gone
        inspect = subprocess.run(
            ["docker", "image", "inspect", "--format",
             "{{index .Config.Labels \"workbench.bootstrap\"}} {{json .Config.Cmd}}", tag],
            capture_output=True, text=True, check=True).stdout.strip()
        assert inspect == 'bookworm ["python3"]'
        ran = subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "python3", "-c",
                              "import sys, venv, ensurepip, ssl; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == "(3, 11)"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)

"""Preflight on real boxes: python, venv, docker via the docker group, no GPU, TCP forwarding; and
on a box whose login shell gives commands a PATH the test chose — tools missing, or tools that
answer wrongly (too old, broken venv, no engine, another OS, garbage where JSON belongs). Every
failure is a check with its fix, never a traceback."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from workbench.remote.connection import SSHHost
from workbench.remote.facts import probe
from workbench.remote.preflight import (
    Check,
    check_docker,
    check_gpu,
    check_os,
    check_python,
    ok,
    preflight,
    render,
)
from workbench.remote.sshconfig import resolve

from tests.remote.conftest import trusted
from tests.support.sshd import Box, require_sshd, sshd_boxes

pytestmark = pytest.mark.sshd


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_preflight_on_a_test_box(ssh: SSHHost) -> None:
    checks = _by_name(preflight(ssh))
    assert checks["OS / arch"].status == "pass"
    assert checks["Python"].status == "pass" and "3." in checks["Python"].detail
    assert checks["python3 -m venv"].status == "pass"
    assert checks["Docker"].status == "pass", checks["Docker"]  # the user is in the docker group
    assert checks["NVIDIA driver"].status == "warn" and checks["NVIDIA driver"].fix
    assert checks["TCP forwarding"].status == "pass"
    assert checks["SFTP"].status == "pass"
    assert ok(list(checks.values()))
    out = io.StringIO()
    Console(file=out, width=200).print(render(list(checks.values())))
    assert "TCP forwarding" in out.getvalue() and "pass" in out.getvalue()


@pytest.fixture(scope="module")
def closed_box() -> Iterator[Box]:
    with sshd_boxes(1, forwarding=(False,)) as started:
        yield started[0]


def test_forwarding_disabled_fails_with_its_fix(closed_box: Box, tmp_path: Path) -> None:
    settings = resolve(closed_box.target, identity=closed_box.client_key, config_path=tmp_path / "none")
    with SSHHost(settings, known_hosts=trusted(closed_box, tmp_path)).connect() as host:
        checks = preflight(host)
    forwarding = _by_name(checks)["TCP forwarding"]
    assert forwarding.status == "fail"
    assert "administratively prohibited" in forwarding.detail
    assert "AllowTcpForwarding" in forwarding.fix
    assert not ok(checks)


def test_no_sftp_subsystem_fails_with_its_fix(tmp_path: Path) -> None:
    """An sshd without SFTP used to fail mid-upload with "Channel closed."; preflight says it."""
    with sshd_boxes(1, sftp=(False,)) as started:
        box = started[0]
        settings = resolve(box.target, identity=box.client_key, config_path=tmp_path / "none")
        with SSHHost(settings, known_hosts=trusted(box, tmp_path)).connect() as host:
            checks = preflight(host)
    sftp = _by_name(checks)["SFTP"]
    assert sftp.status == "fail" and "no SFTP subsystem" in sftp.detail
    assert "Subsystem sftp internal-sftp" in sftp.fix and "/etc/ssh/sshd_config" in sftp.fix
    assert not ok(checks)


def test_a_boxs_words_are_not_markup() -> None:
    out = io.StringIO()
    checks = [Check("Docker", "warn", "[bold]engine[/bold]", "run [a-z] fix")]
    Console(file=out, width=200).print(render(checks))
    assert "[bold]engine[/bold]" in out.getvalue() and "[a-z]" in out.getvalue()


# -- a box whose shell answers wrongly ------------------------------------------------------------

#: the box user's login shell: bash with the environment the test wrote (PATH first of all)
SHELL = """#!/bin/bash
if [ -r {env} ]; then set -a; . {env}; set +a; fi
exec /bin/bash "$@"
"""
#: what preflight runs, present on the PATH unless a test leaves one out or fakes it
TOOLS = ("python3", "uname", "docker")


class OddBox:
    """Sets what the box's commands find: real tools linked into a bin folder of the test's own,
    fake ones (scripts) in their place, extra environment variables."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.bin = box.root / "bin"
        self.env = box.root / "env"
        shell = box.root / "shell"
        shell.write_text(SHELL.format(env=shlex.quote(str(self.env))))
        shell.chmod(0o755)
        subprocess.run(["usermod", "-s", str(shell), box.user], check=True, capture_output=True)

    def answers(self, *, real: tuple[str, ...] = TOOLS, fake: dict[str, str] | None = None,
                env: dict[str, str] | None = None) -> None:
        shutil.rmtree(self.bin, ignore_errors=True)
        self.bin.mkdir(mode=0o755)
        for tool in real:
            where = shutil.which(tool, path=SYSTEM_PATH)  # the box's own, not this test's venv
            assert where, tool
            (self.bin / tool).symlink_to(where)
        for name, script in (fake or {}).items():
            (self.bin / name).write_text("#!/bin/sh\n" + script)
            (self.bin / name).chmod(0o755)
        lines = [f"PATH={self.bin}", *(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())]
        self.env.write_text("\n".join(lines) + "\n")

    def connect(self, tmp_path: Path) -> SSHHost:
        box = self.box
        settings = resolve(box.target, identity=box.client_key, config_path=tmp_path / "none")
        return SSHHost(settings, known_hosts=trusted(box, tmp_path)).connect()

    def preflight(self, tmp_path: Path) -> dict[str, Check]:
        """Every check (the venv probe makes a real venv: a few seconds)."""
        with self.connect(tmp_path) as host:
            checks = preflight(host)
        out = io.StringIO()
        Console(file=out, width=250).print(render(checks))  # every result renders
        return _by_name(checks)

    def docker(self, tmp_path: Path) -> Check:
        with self.connect(tmp_path) as host:
            return check_docker(host)[0]

    def facts(self, tmp_path: Path) -> tuple[Check, Check]:
        """The OS and Python checks, from the box's answers to the facts probe."""
        with self.connect(tmp_path) as host:
            facts = probe(host)
        return check_os(facts), check_python(facts)


@pytest.fixture(scope="module")
def odd_box() -> Iterator[OddBox]:
    require_sshd()
    with sshd_boxes(1) as started:
        yield OddBox(started[0])


@pytest.fixture
def odd(odd_box: OddBox) -> OddBox:
    odd_box.answers()  # the real tools, nothing else: each test changes what it needs
    return odd_box


SYSTEM_PATH = "/usr/bin:/bin"
PYTHON = shutil.which("python3", path=SYSTEM_PATH) or "/usr/bin/python3"


def test_the_odd_box_with_real_tools_passes(odd: OddBox, tmp_path: Path) -> None:
    checks = odd.preflight(tmp_path)
    assert [checks[n].status for n in ("OS / arch", "Python", "python3 -m venv", "Docker")] == ["pass"] * 4
    assert ok(list(checks.values()))


def test_python_missing(odd: OddBox, tmp_path: Path) -> None:
    odd.answers(real=("uname", "docker"))
    checks = odd.preflight(tmp_path)
    assert checks["Python"].status == "fail" and checks["Python"].detail == "no python3 on PATH"
    assert "apt install python3 python3-venv" in checks["Python"].fix
    assert checks["python3 -m venv"].status == "fail"
    assert checks["OS / arch"].status == "pass" and checks["OS / arch"].detail.startswith("Linux ")  # uname
    assert checks["Free disk"].status == "warn" and "no python3" in checks["Free disk"].detail
    assert not ok(list(checks.values()))


def test_python_too_old(odd: OddBox, tmp_path: Path) -> None:
    """A real python3 that reports 3.8.10, as an old Ubuntu's would."""
    lie = "import platform; platform.python_version = lambda: \'3.8.10\'"
    odd.answers(real=("uname", "docker"), fake={"python3": (
        f'[ "$1" = -c ] && exec {PYTHON} -c "{lie}\n$2"\nexec {PYTHON} "$@"\n')})
    system, python = odd.facts(tmp_path)
    assert system.status == "pass" and python.status == "fail"
    assert python.detail == "python3 is 3.8.10, need >= 3.11" and "apt install python3" in python.fix


def test_python_without_a_working_venv(odd: OddBox, tmp_path: Path) -> None:
    """A python3 whose venv module fails as Debian's does without python3-venv: a real python3
    that finds a `venv` of the test's first on its path."""
    shadow = odd.box.root / "no-venv" / "venv"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text(
        "raise SystemExit('The virtual environment was not created successfully because ensurepip is "
        "not available. On Debian/Ubuntu systems, you need to install the python3-venv package')\n")
    for folder in (shadow.parent, shadow):
        os.chmod(folder, 0o755)
    odd.answers(real=("uname", "docker"),
                fake={"python3": f'PYTHONPATH={shadow.parent} exec {PYTHON} "$@"\n'})
    checks = odd.preflight(tmp_path)
    assert checks["Python"].status == "pass"
    venv = checks["python3 -m venv"]
    assert venv.status == "fail" and venv.detail == "python3 -m venv fails"
    assert "apt install python3-venv" in venv.fix
    assert not ok(list(checks.values()))


def test_no_docker_command(odd: OddBox, tmp_path: Path) -> None:
    odd.answers(real=("python3", "uname"))
    docker = odd.docker(tmp_path)
    assert docker.status == "warn" and docker.detail == "no docker command"
    assert "process runtime" in docker.fix  # a warning: the process runtime still works


def test_docker_socket_refused_and_engine_down(odd: OddBox, tmp_path: Path) -> None:
    locked = odd.box.root / "root-only.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        locked.unlink(missing_ok=True)
        sock.bind(str(locked))
        locked.chmod(0o600)  # root's: the box user is refused
        odd.answers(env={"DOCKER_HOST": f"unix://{locked}"})
        refused = odd.docker(tmp_path)
    # `docker info` exits 0 here, listing the refusal in its JSON's ServerErrors
    assert refused.status == "warn" and refused.detail == "the user may not use the Docker socket", refused
    assert "usermod -aG docker" in refused.fix
    odd.answers(env={"DOCKER_HOST": f"unix://{odd.box.root}/no-engine.sock"})
    down = odd.docker(tmp_path)
    assert down.status == "warn" and "Cannot connect to the Docker daemon" in down.detail, down
    assert "systemctl start docker" in down.fix


@pytest.mark.parametrize(
    ("uname", "words"),
    [("FreeBSD 14.0-RELEASE amd64", "Linux only"), ("Linux 6.1.0 riscv64", "x86_64 and aarch64 only")],
)
def test_unknown_os_or_arch(odd: OddBox, tmp_path: Path, uname: str, words: str) -> None:
    odd.answers(real=("docker",), fake={"uname": f"echo '{uname}'\n"})  # no python3: uname speaks
    check, _ = odd.facts(tmp_path)
    assert check.status == "fail" and check.detail == uname and words in check.fix


@pytest.mark.parametrize(
    "printed",
    ["Segmentation fault", "", '{"system": "Linux"}', '["a", "list"]',
     '{"system": "Linux", "release": "6", "machine": "x86_64", "python": "three", "glibc": "",'
     ' "home": "/h", "disk_free": 1}'],
    ids=["garbage", "nothing", "missing keys", "not an object", "no version"],
)
def test_python_answering_garbage_is_a_failed_check(odd: OddBox, tmp_path: Path, printed: str) -> None:
    odd.answers(real=("uname", "docker"), fake={"python3": f"printf '%s\\n' {shlex.quote(printed)}\n"})
    checks = odd.preflight(tmp_path)
    python = checks["Python"]
    assert python.status == "fail" and "did not answer as Python does" in python.detail, python
    assert "install Python >= 3.11" in python.fix
    assert checks["OS / arch"].status == "pass"  # from uname instead
    assert not ok(list(checks.values()))


@pytest.mark.parametrize("printed", ["not json at all", "[1, 2]", '{"Runtimes": "nvidia"}'])
def test_docker_answering_garbage_is_a_warning(odd: OddBox, tmp_path: Path, printed: str) -> None:
    odd.answers(real=("python3", "uname"), fake={"docker": f"echo {shlex.quote(printed)}\n"})
    docker = odd.docker(tmp_path)
    assert docker.status == "warn" and "not its JSON" in docker.detail, docker
    assert "process runtime" in docker.fix


def test_gpu_tools_answering_nothing(odd: OddBox, tmp_path: Path) -> None:
    odd.answers(fake={"nvidia-smi": "echo 'No devices were found'\n", "nvidia-ctk": "exit 0\n"})
    with odd.connect(tmp_path) as host:
        driver, toolkit = check_gpu(host, [])
    assert driver.detail == "0 GPU(s)"
    assert toolkit.status == "pass" and toolkit.detail == "nvidia-ctk (no version printed)"

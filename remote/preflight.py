"""Preflight checks of a box before installing the agent: each passes, warns or fails with its fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import paramiko
from rich.table import Table
from rich.text import Text
from workbench.remote.connection import SSHHost
from workbench.remote.facts import BoxFacts, probe

from workbench.wire.errors import WorkbenchError

Status = Literal["pass", "warn", "fail"]
MIN_DISK = 2 * 1024**3
_VENV_PROBE = """
import subprocess, sys, tempfile
with tempfile.TemporaryDirectory() as d:
    sys.exit(subprocess.run([sys.executable, "-m", "venv", d + "/v"], capture_output=True).returncode)
"""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def required_python() -> tuple[int, int]:
    """The oldest Python the workbench package installs on (its Requires-Python), else 3.10."""
    try:
        spec = ",".join(metadata.metadata("workbench").get_all("Requires-Python") or [])
    except metadata.PackageNotFoundError:
        spec = ""
    for part in spec.split(","):
        part = part.strip()
        if part.startswith(">="):
            major, minor = part[2:].split(".")[:2]
            return int(major), int(minor)
    return (3, 10)


def check_os(facts: BoxFacts) -> Check:
    detail = f"{facts.system} {facts.release} {facts.machine}"
    if facts.system != "Linux":
        return Check("OS / arch", "fail", detail, "workbench's agent runs on Linux only")
    if facts.machine not in ("x86_64", "aarch64", "amd64", "arm64"):
        return Check("OS / arch", "fail", detail, "wheels are resolved for x86_64 and aarch64 only")
    return Check("OS / arch", "pass", detail)


def check_python(facts: BoxFacts) -> Check:
    need = required_python()
    wanted = f"{need[0]}.{need[1]}"
    fix = (f"install Python >= {wanted} with venv (Debian/Ubuntu: `apt install python3 python3-venv`; "
           f"or a uv/pyenv Python as `python3` on the user's PATH)")
    if facts.python is None:
        return Check("Python", "fail", facts.python_problem or "no python3 on PATH", fix)
    if facts.python_tuple < need:
        return Check("Python", "fail", f"python3 is {facts.python}, need >= {wanted}", fix)
    return Check("Python", "pass", f"python3 {facts.python}")


def check_venv(host: SSHHost, facts: BoxFacts) -> Check:
    if facts.python is None:
        return Check("python3 -m venv", "fail", "no python3", "install python3 and python3-venv")
    status, _, _ = host.run(["python3", "-c", _VENV_PROBE], timeout=120)
    if status == 0:
        return Check("python3 -m venv", "pass", "creates a venv with pip")
    return Check("python3 -m venv", "fail", "python3 -m venv fails",
                 "install the venv module (Debian/Ubuntu: `apt install python3-venv`)")


def check_docker(host: SSHHost) -> tuple[Check, list[str]]:
    status, out, err = host.run(["docker", "info", "--format", "{{json .}}"], timeout=60)
    info = _json_object(out) if status == 0 else None
    # the CLI exits 0 and lists ServerErrors when it cannot reach the engine
    errors = (info or {}).get("ServerErrors") or []
    problem = " ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
    if info is not None and not problem:
        runtimes = sorted(str(name) for name in (info.get("Runtimes") or {}))
        detail = f"engine {info.get('ServerVersion', '?')}, reachable without sudo"
        return Check("Docker", "pass", detail), runtimes
    problem = problem or err
    if status == 0 and info is None:
        detail = f"`docker info` answered something that is not its JSON: {out.strip()[:120]!r}"
        fix = ("the process runtime will be used; check that `docker` on the user's PATH is the "
               "Docker CLI (`docker info` on the box)")
    elif status == 127:
        detail = "no docker command"
        fix = "the process runtime will be used; to use Docker install the engine (docs.docker.com)"
    elif "permission denied" in problem.lower():
        detail = "the user may not use the Docker socket"
        fix = ("the process runtime will be used; to use Docker add the user to the docker group "
               "(`sudo usermod -aG docker $USER`, then log in again)")
    else:
        detail = (problem.strip().splitlines() or ["docker info failed"])[-1][:200]
        fix = ("the process runtime will be used; to use Docker start the engine "
               "(`sudo systemctl start docker`)")
    return Check("Docker", "warn", detail, fix), []


def check_gpu(host: SSHHost, docker_runtimes: list[str]) -> list[Check]:
    status, out, _ = host.run(["nvidia-smi", "-L"], timeout=60)
    if status != 0:
        driver = Check("NVIDIA driver", "warn", "no nvidia-smi: no GPU will be used",
                       "GPU use needs the NVIDIA driver (e.g. `apt install nvidia-driver`)")
    else:
        count = len([line for line in out.splitlines() if line.startswith("GPU")])
        driver = Check("NVIDIA driver", "pass", f"{count} GPU(s)")
    ctk_status, ctk_out, _ = host.run(["nvidia-ctk", "--version"], timeout=60)
    if "nvidia" in docker_runtimes or ctk_status == 0:
        version = (ctk_out.strip().splitlines() or ["nvidia-ctk (no version printed)"])[0]
        where = "docker runtime 'nvidia'" if "nvidia" in docker_runtimes else version
        toolkit = Check("NVIDIA Container Toolkit", "pass", where)
    else:
        toolkit = Check("NVIDIA Container Toolkit", "warn", "not found",
                        "GPUs in Docker replicas need the NVIDIA Container Toolkit (nvidia-ctk, CDI); "
                        "process replicas can still use GPUs")
    return [driver, toolkit]


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    runtimes = value.get("Runtimes")
    return value if runtimes is None or isinstance(runtimes, dict) else None


def check_disk(facts: BoxFacts) -> Check:
    if facts.disk_free is None:
        return Check("Free disk", "warn", "unknown (no python3)", "")
    gib = facts.disk_free / 1024**3
    if facts.disk_free < MIN_DISK:
        return Check("Free disk", "warn", f"{gib:.1f} GiB free in {facts.home}",
                     "free at least 2 GiB in the user's HOME (venvs, images, models)")
    return Check("Free disk", "pass", f"{gib:.1f} GiB free in {facts.home}")


def check_forwarding(host: SSHHost) -> Check:
    """Open a direct-tcpip channel to a closed port: 'refused' means forwarding works."""
    try:
        host.open_channel("127.0.0.1", 1).close()
    except paramiko.ChannelException as error:
        if error.code == 1:  # SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
            return Check("TCP forwarding", "fail",
                         "sshd refuses port forwarding (administratively prohibited)",
                         "set `AllowTcpForwarding yes` (or `local`) in /etc/ssh/sshd_config and reload sshd, "
                         "or ask the provider; workbench reaches the agent through it")
    return Check("TCP forwarding", "pass", "allowed by sshd")


def check_sftp(host: SSHHost) -> Check:
    """Open an SFTP session: the agent's wheels and files are uploaded over it."""
    try:
        with host.sftp() as sftp:
            sftp.normalize(".")
    except (paramiko.SSHException, OSError, EOFError) as error:
        return Check("SFTP", "fail", f"sshd offers no SFTP subsystem ({error or type(error).__name__})",
                     "add `Subsystem sftp internal-sftp` (or the path of sftp-server) to "
                     "/etc/ssh/sshd_config and reload sshd, or ask the provider; workbench uploads the "
                     "agent over SFTP")
    except WorkbenchError as error:
        return Check("SFTP", "fail", str(error), "enable the SFTP subsystem of the box's sshd")
    return Check("SFTP", "pass", "the SFTP subsystem answers")


def preflight(host: SSHHost) -> list[Check]:
    """Run every check on a connected box."""
    facts = probe(host)
    docker, runtimes = check_docker(host)
    return [check_os(facts), check_python(facts), check_venv(host, facts), docker,
            *check_gpu(host, runtimes), check_disk(facts), check_forwarding(host), check_sftp(host)]


def ok(checks: list[Check]) -> bool:
    return all(check.status != "fail" for check in checks)


_STYLE = {"pass": ("✓ pass", "green"), "warn": ("! warn", "yellow"), "fail": ("✗ fail", "red")}


def render(checks: list[Check], title: str = "preflight") -> Table:
    """A rich table: check, result, detail, fix (the box's words shown as written, never as markup)."""
    table = Table(title=title)
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        result, style = _STYLE.get(check.status, ("? " + check.status, ""))
        table.add_row(Text(check.name), Text(result, style=style), Text(check.detail), Text(check.fix))
    return table

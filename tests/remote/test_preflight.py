"""Preflight on real boxes: python, venv, docker via the docker group, no GPU, TCP forwarding."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from workbench.remote.connection import SSHHost
from workbench.remote.preflight import Check, ok, preflight, render
from workbench.remote.sshconfig import resolve

from tests.remote.conftest import trusted
from tests.support.sshd import Box, sshd_boxes


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

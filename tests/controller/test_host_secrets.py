"""host_secrets: direct hosts' tokens and CA copies on disk — folder 0700, files 0600, written all
or nothing, never a temporary file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from workbench.controller.host_secrets import HostSecrets, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_keeps_token_and_ca_private(tmp_path: Path) -> None:
    ca = tmp_path / "agent.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    secrets = HostSecrets(tmp_path / "home" / "controller" / "hosts")
    old = os.umask(0o022)
    try:
        secrets.save("box", "s3cret-token", ca)
    finally:
        os.umask(old)
    assert mode(secrets.root) == 0o700
    assert secrets.token_path("box").read_text() == "s3cret-token\n"
    assert mode(secrets.token_path("box")) == 0o600 and mode(secrets.ca_path("box")) == 0o600
    assert secrets.ca_path("box").read_bytes() == ca.read_bytes()
    assert secrets.token("box") == "s3cret-token" and secrets.ca_file("box") == secrets.ca_path("box")
    assert sorted(p.name for p in secrets.root.iterdir()) == ["box.ca.pem", "box.token"]

    secrets.save("box", "new-token")  # no CA now: the old copy goes
    assert secrets.token("box") == "new-token" and secrets.ca_file("box") is None
    secrets.forget("box")
    assert list(secrets.root.iterdir()) == [] and secrets.token("box") is None
    secrets.forget("box")  # forgetting twice is fine


def test_a_failed_save_leaves_nothing_of_the_host(tmp_path: Path) -> None:
    secrets = HostSecrets(tmp_path / "hosts")
    secrets.save("other", "kept")
    with pytest.raises(FileNotFoundError):  # the CA file is read before anything is written
        secrets.save("box", "s3cret-token", tmp_path / "missing.crt")
    assert sorted(p.name for p in secrets.root.iterdir()) == ["other.token"]
    ca = tmp_path / "agent.crt"
    ca.write_text("pem\n")
    secrets.ca_path("box").mkdir()  # the CA copy cannot be written after the token was
    with pytest.raises(IsADirectoryError):
        secrets.save("box", "s3cret-token", ca)
    assert sorted(p.name for p in secrets.root.iterdir()) == ["box.ca.pem", "other.token"]
    assert secrets.token("box") is None and secrets.token("other") == "kept"


def test_write_private_is_atomic_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "token"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        write_private(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["token"]
    write_private(target, b"new\n")
    assert target.read_text() == "new\n" and mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_an_empty_or_unreadable_token_reads_as_none(tmp_path: Path) -> None:
    secrets = HostSecrets(tmp_path / "hosts")
    assert secrets.token("box") is None
    secrets.folder()
    secrets.token_path("box").write_text("\n")
    assert secrets.token("box") is None

"""Model files over SFTP on a box's SSH connection (remote/blobs.py): appended from what the box
has (a resumed upload sends only the rest), and a disk that fills up mid-file (a small tmpfs the
box user writes to) is a clear error that removes the partial file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from workbench.remote.blobs import WriteRefused, sftp_append
from workbench.remote.connection import SSHHost

from tests.support.sshd import Box

MB = 1 << 20


def test_an_upload_resumes_from_what_the_box_has(ssh: SSHHost, box: Box, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    data = os.urandom(8 * MB)
    source.write_bytes(data)
    remote = box.home / "upload.part"
    remote.write_bytes(data[: 3 * MB])
    os.chown(remote, box.uid, -1)
    counted: list[int] = []
    written = sftp_append(ssh, source, str(remote), counted.append)
    assert written == sum(counted) == 5 * MB
    assert remote.read_bytes() == data


def test_a_disk_that_fills_mid_file_removes_the_partial_file(ssh: SSHHost, box: Box, tmp_path: Path) -> None:
    small = box.root / "small"
    small.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=4m,uid={box.uid}", "tmpfs", str(small)], check=True)
    try:
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(12 * MB))
        target = small / "big.part"
        with pytest.raises(WriteRefused, match="disk full") as refused:
            sftp_append(ssh, source, str(target), lambda count: None)
        assert "partial file was removed" in str(refused.value)
        assert not target.exists() and ssh.is_connected()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)

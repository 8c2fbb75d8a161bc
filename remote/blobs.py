"""One file's bytes to a box over SFTP, on the box's one SSH connection: appended to the agent's
partial copy of it (so a dropped link resumes from what arrived), in pipelined writes."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import paramiko
from workbench.remote.connection import SSHHost
from workbench.remote.errors import RemoteError, Unreachable

CHUNK = 1 << 20
log = logging.getLogger("workbench.remote.blobs")


class WriteRefused(RemoteError):
    """The box refused a write over SFTP while the link stayed up (a full disk, permissions); SFTP
    does not say which."""

    default_status = 500


def sftp_append(ssh: SSHHost, source: Path, remote_path: str, on_chunk: Callable[[int], None]) -> int:
    """Append to `remote_path` the part of `source` it lacks (from its size on the box on). Returns
    the bytes written. A dropped link raises Unreachable (what arrived stays); a refused write
    removes the partial file and raises WriteRefused."""
    written = 0
    try:
        with ssh.sftp() as sftp:
            try:
                start = sftp.stat(remote_path).st_size or 0
            except OSError as error:
                if getattr(error, "errno", None) != errno.ENOENT:
                    raise
                start = 0
            log.info("sftp: %s from byte %d on", remote_path, start)
            try:
                with sftp.open(remote_path, "ab" if start else "wb") as out, source.open("rb") as local:
                    out.set_pipelined(True)
                    local.seek(start)
                    while block := local.read(CHUNK):
                        out.write(block)
                        written += len(block)
                        on_chunk(len(block))
            except OSError as error:
                if isinstance(error, socket.timeout | ConnectionError) or not ssh.is_connected():
                    raise
                with_removed = _remove(sftp, remote_path)
                raise WriteRefused(f"{ssh.settings.display} refused writing {remote_path} after "
                                   f"{start + written} bytes ({error or 'SFTP failure'}): is its disk full?"
                                   f"{with_removed}") from None
    except (EOFError, paramiko.SSHException, OSError) as error:
        if isinstance(error, WriteRefused):
            raise
        raise Unreachable(f"the SFTP upload to {ssh.settings.display} broke off: "
                          f"{error or type(error).__name__}") from None
    return written


def _remove(sftp: paramiko.SFTPClient, path: str) -> str:
    try:
        sftp.remove(path)
    except OSError:
        return " (the partial file could not be removed)"
    return " The partial file was removed."

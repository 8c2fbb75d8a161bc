"""Errors raised by workbench.remote; every message says what happened and what to do."""

from __future__ import annotations

from workbench.wire.errors import UpstreamFailed


class RemoteError(UpstreamFailed):
    """Base class: something went wrong talking to a box over SSH (a 502 when it crosses HTTP)."""


class InvalidTarget(RemoteError):
    """A host, user or port string is not acceptable."""

    default_status = 400


class UnknownHostKey(RemoteError):
    """The box's host key is in no known-hosts file; the user must confirm its fingerprint."""

    def __init__(self, host: str, key_type: str, fingerprint: str) -> None:
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        super().__init__(
            f"the authenticity of host {host} can't be established: its {key_type} key "
            f"fingerprint is {fingerprint}. Check it with the provider (on the box: "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), then trust it with "
            f"--trust {fingerprint}"
        )


class HostKeyChanged(RemoteError):
    """The box presented a key that differs from the recorded one. Nothing was run."""

    def __init__(self, host: str, key_type: str, fingerprint: str, file: str, line: int) -> None:
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        self.file, self.line = file, line
        super().__init__(
            f"REMOTE HOST IDENTIFICATION HAS CHANGED for {host}: it now presents the {key_type} "
            f"key {fingerprint}, which is not the key recorded in {file} line {line}. Either the "
            f"box was reinstalled (or re-rented with new keys), or someone is intercepting the "
            f"connection (man-in-the-middle). Nothing was run on it. If you know the box was "
            f"reinstalled, remove line {line} of {file} (e.g. `ssh-keygen -R '{host}' -f {file}`) "
            f"and connect again to review the new fingerprint."
        )


class AuthFailed(RemoteError):
    """No offered key was accepted. workbench never falls back to a password prompt."""

    def __init__(self, user: str, host: str, tried: list[str], reason: str = "") -> None:
        self.user, self.host, self.tried = user, host, tried
        keys = ", ".join(tried) if tried else "none (no -i key, no ssh-agent key, no ~/.ssh/id_* key)"
        extra = f" ({reason})" if reason else ""
        super().__init__(
            f"{host} rejected every key offered for user {user}{extra}; keys tried: {keys}. "
            f"Add your public key to "
            f"~{user}/.ssh/authorized_keys on the box, or pass the right one with -i KEY "
            f"(password login is never used)"
        )


class Unreachable(RemoteError):
    """The box (or its jump host) does not answer, or the link dropped."""


class RemoteCommandError(RemoteError):
    """A command on the box failed; carries its exit status and output."""

    def __init__(self, argv: list[str], status: int, stdout: str, stderr: str) -> None:
        self.argv, self.status, self.stdout, self.stderr = argv, status, stdout, stderr
        tail = (stderr or stdout).strip().splitlines()[-10:]
        super().__init__(f"`{' '.join(argv)}` exited {status} on the box:\n" + "\n".join(tail))

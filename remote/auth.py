"""Public-key authentication: -i / IdentityFile keys, ssh-agent keys, default ~/.ssh/id_* keys.

Passphrase-protected keys ask `passphrase(path)`; without a callback they are skipped (never a
prompt). Passwords are never used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
from workbench.remote.errors import AuthFailed
from workbench.remote.hostkeys import fingerprint
from workbench.remote.sshconfig import HostSettings

Passphrase = Callable[[Path], str | None]
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


def load_key(path: Path, passphrase: Passphrase | None) -> paramiko.PKey:
    """Load a private key; asks `passphrase` when it is encrypted. Raises paramiko.SSHException."""
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, TypeError) as error:
        if isinstance(error, TypeError) and "password" not in str(error):
            raise
        secret = passphrase(path) if passphrase else None
        if not secret:
            raise paramiko.PasswordRequiredException(f"{path} needs a passphrase") from None
        return paramiko.PKey.from_path(path, secret.encode())


def _candidates(settings: HostSettings, passphrase: Passphrase | None,
                notes: list[str]) -> Iterator[tuple[str, paramiko.PKey]]:
    seen: set[bytes] = set()
    files = list(settings.identity_files)
    for path in files:
        yield from _from_file(path, passphrase, notes, seen, explicit=True)
    if not settings.identities_only:
        try:
            agent_keys = paramiko.Agent().get_keys()
        except paramiko.SSHException:
            agent_keys = ()
        for key in agent_keys:
            if key.asbytes() not in seen:
                seen.add(key.asbytes())
                yield f"ssh-agent {key.get_name()} {fingerprint(key)}", key
        for default in DEFAULT_KEYS:
            path = Path(default).expanduser()
            if path.is_file() and path not in files:
                yield from _from_file(path, passphrase, notes, seen, explicit=False)


def _from_file(path: Path, passphrase: Passphrase | None, notes: list[str], seen: set[bytes],
               explicit: bool) -> Iterator[tuple[str, paramiko.PKey]]:
    try:
        key = load_key(path, passphrase)
    except paramiko.PasswordRequiredException:
        notes.append(f"{path} (skipped: needs a passphrase; add it to ssh-agent)")
        return
    except (OSError, paramiko.SSHException, ValueError) as error:
        if explicit:
            notes.append(f"{path} (unreadable: {error})")
        return
    if key.asbytes() not in seen:
        seen.add(key.asbytes())
        yield f"{path} ({key.get_name()} {fingerprint(key)})", key


def authenticate(transport: paramiko.Transport, settings: HostSettings,
                 passphrase: Passphrase | None = None) -> str:
    """Try each key until one is accepted; returns its description. Raises AuthFailed."""
    tried: list[str] = []
    for label, key in _candidates(settings, passphrase, tried):
        try:
            transport.auth_publickey(settings.user, key)
        except paramiko.BadAuthenticationType as error:
            raise AuthFailed(settings.user, f"{settings.hostname}:{settings.port}", [*tried, label],
                             f"the server allows only {', '.join(error.allowed_types)}") from None
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        if transport.is_authenticated():
            return label
        tried.append(label)
    raise AuthFailed(settings.user, f"{settings.hostname}:{settings.port}", tried)

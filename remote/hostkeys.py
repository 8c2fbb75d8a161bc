"""Host key verification: ~/.ssh/known_hosts + workbench's own file; unknown refused, changed refused.

There is no policy that adds or merely warns about unknown keys: a key is accepted only when a
known-hosts file holds it, or when the caller passes `trust="SHA256:…"` equal to its fingerprint
(then it is recorded).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys
from workbench.remote.errors import HostKeyChanged, UnknownHostKey

from workbench import paths

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint exactly as OpenSSH prints it (`SHA256:` + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def workbench_known_hosts() -> Path:
    """$WORKBENCH_HOME/known_hosts, else the platform data dir's."""
    return paths.home() / "known_hosts"


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


@dataclass(frozen=True)
class KnownKey:
    file: Path
    line: int
    key: paramiko.PKey


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        salt = pattern.split("|")[2]
        return HostKeys.hash_host(name, salt) == pattern
    if "*" not in pattern and "?" not in pattern:  # `[host]:port` is literal, not a glob class
        return pattern.lower() == name.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


def _matches(patterns: Sequence[str], name: str) -> bool:
    hit = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if _name_matches(pattern[1:], name):
                return False
        elif _name_matches(pattern, name):
            hit = True
    return hit


class KnownHosts:
    """The known-hosts files read (in order) and the one workbench records accepted keys in."""

    def __init__(self, files: Sequence[Path] | None = None, record_file: Path | None = None) -> None:
        self.record_file = (record_file or workbench_known_hosts()).expanduser()
        chosen = list(files) if files is not None else [USER_KNOWN_HOSTS]
        self.files = [p.expanduser() for p in chosen]
        if self.record_file not in self.files:
            self.files.append(self.record_file)

    def lookup(self, name: str) -> list[KnownKey]:
        """Every recorded key for `name` (`host` or `[host]:port`), hashed entries included."""
        found: list[KnownKey] = []
        for path in self.files:
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for number, raw in enumerate(lines, 1):
                line = raw.strip()
                if not line or line.startswith("#") or line.startswith("@"):
                    continue
                try:
                    entry = HostKeyEntry.from_line(line, number)
                except Exception:  # a key type paramiko does not know, or a garbled line
                    continue
                if entry is not None and entry.key is not None and _matches(entry.hostnames, name):
                    found.append(KnownKey(path, number, entry.key))
        return found

    def key_types(self, name: str) -> list[str]:
        return list(dict.fromkeys(k.key.get_name() for k in self.lookup(name)))

    def verify(self, name: str, key: paramiko.PKey, trust: str | None = None) -> None:
        """Return when `key` is the recorded key for `name`; record it when `trust` equals its
        fingerprint and nothing is recorded; raise UnknownHostKey / HostKeyChanged otherwise."""
        known = self.lookup(name)
        if any(k.key.asbytes() == key.asbytes() for k in known):
            return
        if known:
            same = [k for k in known if k.key.get_name() == key.get_name()] or known
            raise HostKeyChanged(name, key.get_name(), fingerprint(key), str(same[0].file), same[0].line)
        if trust is not None and trust.strip().rstrip("=") == fingerprint(key):
            self.record(name, key)
            return
        raise UnknownHostKey(name, key.get_name(), fingerprint(key))

    def record(self, name: str, key: paramiko.PKey) -> None:
        with _lock:
            self.record_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.record_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(known_hosts_line(name, key) + "\n")


class RefuseUnknownPolicy(paramiko.MissingHostKeyPolicy):
    """For paramiko.SSHClient users: refuse unknown keys unless `trust` names the fingerprint."""

    def __init__(self, known: KnownHosts, trust: str | None = None, port: int = 22) -> None:
        self.known, self.trust, self.port = known, trust, port

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        name = hostname if self.port == 22 or hostname.startswith("[") else f"[{hostname}]:{self.port}"
        self.known.verify(name, key, self.trust)

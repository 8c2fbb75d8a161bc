"""Connection settings: `[user@]HOST[:PORT]`, `-i KEY`, `--jump`, and ~/.ssh/config as `ssh` reads it."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from workbench.remote.errors import InvalidTarget

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
DEFAULT_CONFIG = Path("~/.ssh/config")


def check_host(host: str) -> str:
    """A DNS name, IPv4 or IPv6 address; no spaces, no leading '-', nothing a shell would read."""
    if _HOST.fullmatch(host) or (":" in host and _IPV6.fullmatch(host)):
        return host
    raise InvalidTarget(f"{host!r} is not a host name or address (letters, digits, '.', '-', '_'; "
                        "it may not start with '-')")


def check_user(user: str) -> str:
    if _USER.fullmatch(user):
        return user
    raise InvalidTarget(f"{user!r} is not a user name (letters, digits, '.', '-', '_'; it may not "
                        "start with '-')")


def check_port(port: int | str) -> int:
    text = str(port)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidTarget(f"{port!r} is not a TCP port (1-65535)")
    return int(text)


@dataclass(frozen=True)
class Target:
    """What the user typed: `[user@]HOST[:PORT]` (HOST may be an alias from ~/.ssh/config)."""

    host: str
    user: str | None = None
    port: int | None = None


def parse_target(text: str) -> Target:
    """Parse `[user@]HOST[:PORT]`; IPv6 needs brackets when a port is given (`[::1]:2222`)."""
    text = text.strip()
    user: str | None = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
        check_user(user)
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidTarget(f"{text!r}: expected [IPv6]:PORT")
        if rest:
            port = check_port(rest[1:])
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = check_port(raw)
    else:
        host = text
    if not host:
        raise InvalidTarget("no host given: expected [user@]HOST[:PORT]")
    return Target(check_host(host), user, port)


@dataclass(frozen=True)
class HostSettings:
    """Everything needed to open one SSH connection (after ~/.ssh/config was applied)."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    identities_only: bool = False
    jump: HostSettings | None = field(default=None)

    @property
    def display(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts uses: `host`, or `[host]:port` off port 22."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _load_config(path: Path | None) -> paramiko.SSHConfig:
    path = (path or DEFAULT_CONFIG).expanduser()
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def resolve(target: str | Target, *, identity: Path | str | None = None, jump: str | None = None,
            config_path: Path | None = None) -> HostSettings:
    """Apply ~/.ssh/config (HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump) to a
    target; explicit user/port/-i/--jump win over the config, as with `ssh`."""
    config = _load_config(config_path)
    return _resolve(target if isinstance(target, Target) else parse_target(target), config,
                    identity=Path(identity).expanduser() if identity else None, jump=jump, depth=0)


def _resolve(target: Target, config: paramiko.SSHConfig, *, identity: Path | None, jump: str | None,
             depth: int) -> HostSettings:
    if depth > 8:
        raise InvalidTarget("ProxyJump chain is longer than 8 hops (a loop in ~/.ssh/config?)")
    entry = config.lookup(target.host)
    hostname = check_host(str(entry.get("hostname", target.host)))
    user = check_user(target.user or str(entry.get("user") or getpass.getuser()))
    port = target.port or check_port(entry.get("port", 22))
    files = [Path(p).expanduser() for p in entry.get("identityfile", [])]
    if identity is not None:
        files.insert(0, identity)
    only = str(entry.get("identitiesonly", "no")).lower() == "yes" or identity is not None
    hops = jump if jump is not None else entry.get("proxyjump")
    via: HostSettings | None = None
    if hops and str(hops).lower() != "none":
        chain = [h.strip() for h in str(hops).split(",") if h.strip()]
        # `a,b` means: reach b through a, then the target through b.
        for hop in chain:
            hop_settings = _resolve(parse_target(hop), config, identity=None, jump="none", depth=depth + 1)
            via = HostSettings(hop_settings.alias, hop_settings.hostname, hop_settings.port,
                               hop_settings.user, hop_settings.identity_files,
                               hop_settings.identities_only, via)
    return HostSettings(target.host, hostname, port, user, tuple(dict.fromkeys(files)), only, via)

"""Direct mode (LAN/VPN): an agent the user runs on the box (`python -m workbench.agent serve
--direct`), reached over TCP with its bearer token, over TLS when a CA file is given. Nothing is
installed or started over SSH. Replicas listen on the box's loopback only, so the router reaches
them through the agent's proxy route, with the agent's token (docs/remote.md, Direct mode).

The token (and a copy of the CA file) are kept by workbench.controller.host_secrets.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

from workbench import __version__, paths
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.host_secrets import HostSecrets
from workbench.controller.links.base import (
    Emit,
    HostFailed,
    HostInputError,
    HostLink,
    Joined,
    LinkRefused,
    Notice,
    ReplicaEndpoint,
)
from workbench.controller.state import RemoteRecord
from workbench.wire.agent import HostInfo
from workbench.wire.control import AddHostRequest, HostEvent
from workbench.wire.errors import WorkbenchError


def direct_url(target: str, *, tls: bool, port: int | None = None) -> str:
    """`http(s)://HOST:PORT` or `HOST:PORT` (https when a CA file is given) as the agent's URL."""
    text = target.strip()
    if "://" not in text:
        text = ("https://" if tls else "http://") + text
    try:
        parts = urlsplit(text)
        given_port = parts.port
    except ValueError as error:
        raise HostInputError(f"bad target {target!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise HostInputError(f"bad target {target!r}: use HOST:PORT or http(s)://HOST:PORT")
    if not parts.hostname or parts.username or parts.password or parts.path.strip("/") \
            or parts.query or parts.fragment:
        raise HostInputError(f"bad target {target!r}: use HOST:PORT or http(s)://HOST:PORT")
    if tls and parts.scheme != "https":
        raise HostInputError(f"--ca-cert is for an https agent; {target!r} says http")
    if given_port is not None and port is not None and given_port != port:
        raise HostInputError(f"the target says port {given_port}, --port says {port}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{given_port or port or paths.DEFAULT_AGENT_PORT}"


def tls_hint(error: str) -> str:
    """What to change when a TLS handshake with the agent failed (empty when it was not TLS)."""
    if "CERTIFICATE_VERIFY_FAILED" in error or "certificate verify failed" in error:
        return " (TLS: pass --ca-cert with the certificate, or the CA, the agent serves)"
    if "WRONG_VERSION_NUMBER" in error or "wrong version number" in error:
        return " (TLS: the agent answers plain HTTP; use http://HOST:PORT without --ca-cert)"
    return ""


async def check_agent(url: str, token: str, ca_cert: str | None) -> HostInfo:
    """The agent's HostInfo, or a HostFailed that says what to fix."""
    try:
        async with AsyncAgentClient(url, token, timeout=10.0, verify=ca_cert or True) as client:
            return await client.host()
    except WorkbenchError as error:
        if error.status == 401:
            raise HostFailed(f"the agent at {url} refused the token: pass the `token` from the box's agent "
                             "config.json (`python -m workbench.agent init` prints its path) with "
                             "--token-file") from None
        raise HostFailed(f"cannot reach the agent at {url}: {error}{tls_hint(str(error))}; on the box run "
                         "`python -m workbench.agent serve --direct --bind ADDRESS` (see docs/remote.md, "
                         "Direct mode)") from None


def validate(request: AddHostRequest) -> None:
    """Refuse (HostInputError) what direct mode cannot use; nothing is contacted."""
    for flag, value in (("-i/--identity", request.identity), ("--jump", request.jump),
                        ("--trust", request.trust), ("--online", request.online or None)):
        if value is not None:
            raise HostInputError(f"{flag} is for SSH hosts; direct mode reaches the agent over TCP only")
    token = request.token or ""
    if not token or any(c.isspace() for c in token):
        raise HostInputError("direct mode needs the agent's token (--token-file FILE: the `token` "
                             "of the box's agent config.json, on one line)")
    if request.ca_cert is not None:
        if not Path(request.ca_cert).expanduser().is_file():
            raise HostInputError(f"CA file {request.ca_cert} does not exist")
        try:
            ssl.create_default_context(cafile=str(Path(request.ca_cert).expanduser()))
        except (ssl.SSLError, OSError, ValueError) as error:
            raise HostInputError(f"CA file {request.ca_cert} is not a PEM certificate: {error}") from None
    direct_url(request.target, tls=request.ca_cert is not None, port=request.port)


class DirectLink(HostLink):
    """The agent at `url` with its token; replicas through the agent's proxy route."""

    kind = "direct"

    def __init__(self, name: str, url: str, secrets: HostSecrets, *, token: str | None = None,
                 ca_source: Path | None = None) -> None:
        super().__init__(name, url)
        self.url = url
        self.secrets = secrets
        self._token = token
        self._ca_source = ca_source  # the user's CA file, until add() keeps a copy
        self._ca: Path | None = None  # the kept copy of the CA file (after add or connect)
        self._seen_version: str | None = None

    @classmethod
    def from_request(cls, request: AddHostRequest, secrets: HostSecrets) -> DirectLink:
        url = direct_url(request.target, tls=request.ca_cert is not None, port=request.port)
        ca_source = Path(request.ca_cert).expanduser() if request.ca_cert else None
        return cls(request.name, url, secrets, token=request.token, ca_source=ca_source)

    @classmethod
    def from_record(cls, record: RemoteRecord, secrets: HostSecrets) -> DirectLink:
        return cls(record.name, record.target, secrets)

    # -- the agent and the replicas -------------------------------------------------------------
    @property
    def agent_url(self) -> str:
        return self.url

    @property
    def token(self) -> str:
        return self._token or ""

    @property
    def ca_cert(self) -> str | None:
        """The PEM file that verifies the agent (TLS), or None for plain HTTP."""
        ca = self._ca or self._ca_source
        return str(ca) if ca is not None else None

    @property
    def verify(self) -> bool | str | Path:
        return self.ca_cert or True

    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        """The agent's proxy route for the replica; every request carries the agent's token."""
        return ReplicaEndpoint(f"{self.url.rstrip('/')}/v1/replicas/{replica_id}/proxy",
                               headers=(("authorization", f"Bearer {self.token}"),), ca_cert=self.ca_cert)

    # -- lifecycle ------------------------------------------------------------------------------
    async def add(self, emit: Emit) -> Joined:
        """Check the agent answers with this token (over TLS when a CA is given), then keep the
        token and the CA file (0600). Nothing is installed: the user runs the agent on the box."""
        emit(HostEvent(kind="step", host=self.name, step="connect",
                       message=f"checking the agent at {self.url}"))
        ca_source = str(self._ca_source) if self._ca_source is not None else None
        info = await check_agent(self.url, self.token, ca_source)
        self.secrets.save(self.name, self.token, self._ca_source)
        self._ca, self._ca_source = self.secrets.ca_file(self.name), None
        self._seen_version = info.agent_version
        record = RemoteRecord(name=self.name, target=self.url, kind=self.kind,
                              agent_port=urlsplit(self.url).port, agent_version=info.agent_version)
        return Joined(record, summary=f"direct, {self.url}",
                      done=f"{self.name} is part of the fleet (direct mode)")

    async def connect(self) -> None:
        """Read the kept token; the agent itself is not asked (the fleet's poll marks the host
        unreachable until it answers)."""
        self._token = self.secrets.token(self.name)
        self._ca = self.secrets.ca_file(self.name)
        if self._token is None:
            raise HostFailed(f"the token file {self.secrets.token_path(self.name)} is missing: "
                             f"`workbench host remove {self.name}` and add it again")

    async def outdated(self) -> Notice | None:
        version = self._seen_version  # only known right after add(): its check read it
        if version is None or version == __version__:
            return None
        return Notice(f"host {self.name} runs agent {version}, the workstation {__version__}: install "
                      "this version on the box and restart its agent",
                      {"host": self.name, "agent_version": version})

    async def upgrade(self, emit: Emit) -> str:
        raise LinkRefused(f"{self.name} is a direct host: install workbench {__version__} on the box and "
                          "restart its agent there (`host upgrade` works over SSH)")

    def forget(self) -> None:
        self.secrets.forget(self.name)

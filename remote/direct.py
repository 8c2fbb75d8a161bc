"""Direct mode (LAN/VPN): the agent reached over TCP at http(s)://HOST:PORT with its bearer token.

The agent side is `python -m workbench.agent serve --direct --host ADDRESS`. Replicas still listen
on the box's loopback, so direct mode reaches the agent only; replica traffic needs a tunnel.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
from workbench.remote.errors import RemoteError
from workbench.remote.sshconfig import check_host, check_port

from workbench.clients.agent import AgentClient


class DirectHost:
    """The agent at `http(s)://host:port`; TLS (verified against `ca_cert`) when `ca_cert` is given."""

    def __init__(self, host: str, port: int, token: str, *, ca_cert: Path | None = None) -> None:
        self.host, self.port = check_host(host), check_port(port)
        self._token = token
        self._ca = ca_cert
        scheme = "https" if ca_cert else "http"
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.agent_url = f"{scheme}://{name}:{self.port}"

    @property
    def agent_token(self) -> str:
        return self._token

    def agent_client(self, timeout: float = 30.0) -> AgentClient:
        transport = None
        if self._ca is not None:
            transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(self._ca)))
        return AgentClient(self.agent_url, self._token, timeout=timeout, transport=transport)

    def endpoint_url(self, remote_url: str) -> str:
        raise RemoteError("replicas listen on the box's loopback only; in direct mode the router cannot "
                          f"reach {remote_url} — use an SSH tunnel for replica traffic")

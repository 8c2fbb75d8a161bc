"""The agent on this machine: reached at its own loopback URL, and so are its replicas."""

from __future__ import annotations

from workbench.controller.links.base import HostLink, ReplicaEndpoint


class LocalLink(HostLink):
    """An agent at `url` that shares the controller's network: nothing in between, nothing to
    install or upgrade (the workstation's own workbench runs it)."""

    kind = "local"

    def __init__(self, url: str, token: str, name: str = "local") -> None:
        super().__init__(name, url)
        self._url = url
        self._token = token

    @property
    def agent_url(self) -> str:
        return self._url

    @property
    def token(self) -> str:
        return self._token

    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        return ReplicaEndpoint(replica_url)


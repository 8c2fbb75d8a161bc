"""Host links: one interface (base.HostLink) with three implementations — the agent on this machine
(local), a box over SSH (ssh), an agent on the LAN/VPN (direct). `Links` makes the right one for a
request or a stored record: the one place that maps a kind of host to its link."""

from __future__ import annotations

from typing import Protocol

from workbench.controller.host_secrets import HostSecrets
from workbench.controller.links import direct, ssh
from workbench.controller.links.base import HostLink
from workbench.controller.state import RemoteRecord
from workbench.wire.control import AddHostRequest


class LinkFactory(Protocol):
    """What the host manager needs to make links (tests give it one of their own)."""

    def validate(self, request: AddHostRequest) -> None: ...
    def for_request(self, request: AddHostRequest) -> HostLink: ...
    def for_record(self, record: RemoteRecord) -> HostLink: ...


class Links:
    """SSH links, and direct ones (`--direct`), whose secrets live in `secrets`."""

    def __init__(self, secrets: HostSecrets | None = None) -> None:
        self.secrets = secrets or HostSecrets.default()

    def validate(self, request: AddHostRequest) -> None:
        """Refuse (HostInputError, a 400) a request its link could not use; nothing is contacted."""
        if request.direct:
            direct.validate(request)
        else:
            ssh.validate(request)

    def for_request(self, request: AddHostRequest) -> HostLink:
        if request.direct:
            return direct.DirectLink.from_request(request, self.secrets)
        return ssh.SSHLink.from_request(request)

    def for_record(self, record: RemoteRecord) -> HostLink:
        if record.kind == direct.DirectLink.kind:
            return direct.DirectLink.from_record(record, self.secrets)
        return ssh.SSHLink.from_record(record)

"""The direct link: the agent's URL from what the user typed, the checks before anything is kept,
the TLS diagnosis against real agents (one over TLS with its own CA, one over plain HTTP), what
the router is given for a replica, and the secrets it keeps and forgets."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Agent, free_port
from tests.agent.test_proxy import DirectAgent, make_cert
from workbench.controller.host_secrets import HostSecrets
from workbench.controller.links.base import HostFailed, HostInputError, LinkRefused
from workbench.controller.links.direct import DirectLink, check_agent, direct_url, tls_hint, validate
from workbench.controller.state import RemoteRecord
from workbench.wire.control import AddHostRequest, HostEvent


@pytest.mark.parametrize(("target", "tls", "port", "url"), [
    ("10.0.0.7:8770", False, None, "http://10.0.0.7:8770"),
    ("10.0.0.7", False, None, "http://10.0.0.7:8770"),  # the agent's default port
    ("10.0.0.7", True, 9000, "https://10.0.0.7:9000"),
    ("https://gpubox.lan:8443/", True, None, "https://gpubox.lan:8443"),
    (" http://gpubox.lan:1 ", False, 1, "http://gpubox.lan:1"),
    ("[fd00::7]:8770", False, None, "http://[fd00::7]:8770"),
])
def test_direct_url_accepts_host_port_and_urls(target: str, tls: bool, port: int | None, url: str) -> None:
    assert direct_url(target, tls=tls, port=port) == url


@pytest.mark.parametrize(("target", "tls", "port", "says"), [
    ("ftp://gpubox:1", False, None, "use HOST:PORT or http(s)://HOST:PORT"),
    ("gpubox:notaport", False, None, "bad target 'gpubox:notaport'"),
    ("http://user:pw@gpubox:1", False, None, "use HOST:PORT"),
    ("http://gpubox:1/v1", False, None, "use HOST:PORT"),
    ("http://gpubox:1?x=1", False, None, "use HOST:PORT"),
    ("http://:1", False, None, "use HOST:PORT"),
    ("http://gpubox:1", True, None, "--ca-cert is for an https agent; 'http://gpubox:1' says http"),
    ("gpubox:1", False, 2, "the target says port 1, --port says 2"),
])
def test_direct_url_refuses_what_it_cannot_use(target: str, tls: bool, port: int | None, says: str) -> None:
    with pytest.raises(HostInputError) as refused:
        direct_url(target, tls=tls, port=port)
    assert says in str(refused.value) and refused.value.status == 400


def test_validate_names_the_flag_to_fix(tmp_path: Path) -> None:
    def request(**extra: object) -> AddHostRequest:
        return AddHostRequest.model_validate({"name": "box", "target": "10.0.0.7:8770", "direct": True,
                                              "token": "t0ken", **extra})

    validate(request())
    cases: dict[str, dict[str, object]] = {
        "-i/--identity is for SSH hosts": {"identity": "/k"}, "--jump is for SSH": {"jump": "j"},
        "--trust is for SSH": {"trust": "SHA256:x"}, "--online is for SSH": {"online": True},
        "needs the agent's token": {"token": None}, "on one line": {"token": "two words"},
        "does not exist": {"ca_cert": str(tmp_path / "none.pem")}}
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases["is not a PEM certificate"] = {"ca_cert": str(garbage)}
    for says, extra in cases.items():
        with pytest.raises(HostInputError) as refused:
            validate(request(**extra))
        assert says in str(refused.value), (extra, str(refused.value))


def test_tls_hint_tells_the_two_tls_mistakes_apart() -> None:
    assert "pass --ca-cert" in tls_hint("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert "answers plain HTTP" in tls_hint("[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert tls_hint("connection refused") == ""


@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectAgent]:
    folder = tmp_path_factory.mktemp("tls-agent")
    cert, key = make_cert(folder / "certs")
    agent = DirectAgent(folder / "home", ["--direct", "--bind", "127.0.0.1", "--tls-cert", str(cert),
                                          "--tls-key", str(key)], scheme="https", ca=cert)
    try:
        yield agent.start()  # type: ignore[misc]
    finally:
        agent.cleanup()


@pytest.fixture(scope="module")
def plain_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("plain-agent") / "home")
    try:
        yield agent.start()
    finally:
        agent.cleanup()


def test_check_agent_diagnoses_token_and_tls(tls_agent: DirectAgent, plain_agent: Agent) -> None:
    token, ca = tls_agent.config["token"], str(tls_agent.ca)
    info = asyncio.run(check_agent(tls_agent.url, token, ca))
    assert info.agent_version

    with pytest.raises(HostFailed) as untrusted:  # the system's store does not know its CA
        asyncio.run(check_agent(tls_agent.url, token, None))
    assert "(TLS: pass --ca-cert with the certificate" in str(untrusted.value)
    with pytest.raises(HostFailed) as refused:
        asyncio.run(check_agent(tls_agent.url, "not-the-token", ca))
    assert "refused the token" in str(refused.value) and "--token-file" in str(refused.value)
    assert "not-the-token" not in str(refused.value)
    plain_as_tls = plain_agent.url.replace("http://", "https://")
    with pytest.raises(HostFailed) as plain:
        asyncio.run(check_agent(plain_as_tls, plain_agent.config["token"], ca))
    assert "(TLS: the agent answers plain HTTP; use http://HOST:PORT without --ca-cert)" in str(plain.value)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HostFailed) as silent:
        asyncio.run(check_agent(nowhere, "t", None))
    assert f"cannot reach the agent at {nowhere}" in str(silent.value)
    assert "serve --direct --bind ADDRESS" in str(silent.value)


def test_add_keeps_the_secrets_and_routes_replicas_through_the_agent(tls_agent: DirectAgent,
                                                                      tmp_path: Path) -> None:
    secrets = HostSecrets(tmp_path / "hosts")
    token = tls_agent.config["token"]
    request = AddHostRequest(name="box", target=f"127.0.0.1:{tls_agent.port}", direct=True, token=token,
                             ca_cert=str(tls_agent.ca))
    link = DirectLink.from_request(request, secrets)
    events: list[HostEvent] = []
    joined = asyncio.run(link.add(events.append))
    assert [e.step for e in events] == ["connect"] and token not in events[0].message
    url = f"https://127.0.0.1:{tls_agent.port}"
    assert joined.record == RemoteRecord(name="box", target=url, kind="direct", agent_port=tls_agent.port,
                                         agent_version=joined.record.agent_version,
                                         added_at=joined.record.added_at)
    assert joined.summary == f"direct, {url}" and joined.done == "box is part of the fleet (direct mode)"
    assert secrets.token("box") == token and stat.S_IMODE(secrets.token_path("box").stat().st_mode) == 0o600
    assert link.verify == str(secrets.ca_path("box"))  # the kept copy, not the user's file

    endpoint = link.endpoint("http://127.0.0.1:41234", "r1")
    assert endpoint.url == f"{url}/v1/replicas/r1/proxy"
    assert endpoint.headers == (("authorization", f"Bearer {token}"),)
    assert endpoint.ca_cert == str(secrets.ca_path("box"))
    assert link.kind == "direct" and link.address == url and link.agent_url == url

    restored = DirectLink.from_record(joined.record, secrets)  # after a controller restart
    asyncio.run(restored.connect())
    assert restored.token == token and restored.verify == str(secrets.ca_path("box"))
    direct_only = r"box is a direct host: install workbench .* \(`host upgrade` works over SSH\)"
    with pytest.raises(LinkRefused, match=direct_only):
        asyncio.run(restored.upgrade(events.append))
    restored.forget()
    assert secrets.token("box") is None and secrets.ca_file("box") is None
    with pytest.raises(HostFailed, match=r"the token file .*box.token is missing: `workbench host remove"):
        asyncio.run(DirectLink.from_record(joined.record, secrets).connect())


def test_a_refused_check_keeps_nothing(tls_agent: DirectAgent, tmp_path: Path) -> None:
    secrets = HostSecrets(tmp_path / "hosts")
    request = AddHostRequest(name="box", target=f"127.0.0.1:{tls_agent.port}", direct=True,
                             token="not-the-token", ca_cert=str(tls_agent.ca))
    with pytest.raises(HostFailed, match="refused the token"):
        asyncio.run(DirectLink.from_request(request, secrets).add(lambda event: None))
    assert not secrets.root.exists() or list(secrets.root.iterdir()) == []

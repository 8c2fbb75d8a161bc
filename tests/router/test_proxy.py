"""Forwarding details: large bodies stream through, garbage never crashes the router."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.router.conftest import router_subprocess, wait_for
from tests.serving.conftest import stop


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_50_mb_body_streams_without_growing_the_router(replicas, tmp_path):
    rep = replicas(serving={"max_body_bytes": 64 * 1024 * 1024})
    proc, url = router_subprocess(["--api", f"big={rep.url}", "--max-body-bytes", str(64 * 1024 * 1024)],
                                  tmp_path / "router.txt")
    try:
        def up() -> bool:
            try:
                return httpx.post(url + "/big", json={}).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, "router up")
        for _ in range(20):
            httpx.post(url + "/big", content=b"x" * 100_000)  # warm up buffers and pools
        before = rss_kib(proc.pid)
        chunk = b"z" * (1024 * 1024)

        def body():
            for _ in range(50):
                yield chunk

        r = httpx.post(url + "/big", content=body(), timeout=120,
                       headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200 and r.json()["payload"] == {"bytes": 50 * 1024 * 1024}
        grown_mib = (rss_kib(proc.pid) - before) / 1024
        assert grown_mib < 20, f"router RSS grew {grown_mib:.1f} MiB for a 50 MiB body"
    finally:
        stop(proc)


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` and read the answer's status line and headers. A reset, a timeout or a
    connection closed without an answer fails the test: garbage must get a 4xx, not silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError) as error:
                raise AssertionError(f"no answer to {data[:60]!r}: {error!r}") from None
            if not chunk:
                raise AssertionError(f"closed without an answer to {data[:60]!r}: {received[:200]!r}")
            received += chunk
        return received


GARBAGE = {
    "not HTTP": b"\x00\x01\x02 not http at all\r\n\r\n",
    "bad Content-Length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "200 KB header": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    "unknown method": b"BREW /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    "length and chunked": b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


def test_garbage_input_gets_4xx_and_the_router_keeps_serving(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()])
    for what, data in GARBAGE.items():
        answer = raw_exchange(srv.port, data)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 4"), (what, answer[:300])
    r = httpx.post(srv.url + "/echo", json={"still": "ok"})
    assert r.status_code == 200 and r.json()["payload"] == {"still": "ok"}


def test_hop_by_hop_headers_are_not_forwarded(replicas, router_server):
    """What the replica received: no hop-by-hop header, none that Connection names; the rest
    (and an end-to-end header the client set) arrives."""
    srv = router_server()
    srv.add_api("echo", [replicas()])
    r = httpx.post(srv.url + "/echo?headers=1", json={"x": 1},
                   headers={"Connection": "keep-alive, X-Private", "X-Private": "1",
                            "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic abc", "TE": "trailers",
                            "Upgrade": "h2c", "X-End-To-End": "kept"})
    assert r.status_code == 200, r.text
    received = r.json()["headers"]
    for name in ("x-private", "keep-alive", "proxy-authorization", "te", "upgrade", "transfer-encoding"):
        assert name not in received, (name, received)
    assert received.get("connection", "keep-alive") == "keep-alive"  # the router's own connection
    assert received["x-end-to-end"] == "kept" and received["content-type"] == "application/json"
    assert r.json()["payload"] == {"x": 1}

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
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def test_garbage_input_gets_4xx_and_the_router_keeps_serving(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()])
    answers = [
        raw_exchange(srv.port, b"\x00\x01\x02 not http at all\r\n\r\n"),
        raw_exchange(srv.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        raw_exchange(srv.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"),
        raw_exchange(srv.port, b"BREW /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
        raw_exchange(srv.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ]
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    r = httpx.post(srv.url + "/echo", json={"still": "ok"})
    assert r.status_code == 200 and r.json()["payload"] == {"still": "ok"}


def test_hop_by_hop_headers_are_not_forwarded(replicas, router_server):
    srv = router_server()
    rep = replicas()
    srv.add_api("echo", [rep])
    r = httpx.get(srv.url + "/echo/readyz", headers={"Connection": "keep-alive, X-Private", "X-Private": "1",
                                                     "Proxy-Authorization": "Basic abc"})
    assert r.status_code == 200
    assert "transfer-encoding" not in r.headers or r.headers["transfer-encoding"] == "chunked"

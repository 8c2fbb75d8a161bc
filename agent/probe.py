"""A tiny asyncio HTTP GET used to probe a replica's readiness (a predictor's /readyz, a container
API's health path)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def http_status(url: str, timeout: float = 1.0) -> int | None:
    """Return the status code of `GET url`, or None when it does not answer in time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            line = await reader.readline()
        fields = line.decode("latin-1").split()
        return int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


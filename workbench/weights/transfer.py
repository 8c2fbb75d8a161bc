"""Sending a model version's files from this machine to a host's cache: only the files the host
lacks, each resumed from the bytes it already has (a dropped link loses nothing that arrived), each
checked by its sha256 on arrival (a mismatch is sent once more, then an error).

A `BlobSender` moves one file's bytes over the host's link: `AgentApiSender` PUTs them to the
agent's API (any link), an SSH link may use SFTP over its connection instead (links/ssh.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

from workbench.clients.agent import AsyncAgentClient
from workbench.wire.errors import BadRequest, ConnectionFailed, Failed, Timeout, Unavailable, WorkbenchError
from workbench.wire.model_cache import BlobState, Meter, ModelFile, ModelManifest, PrepareAnswer

log = logging.getLogger("workbench.weights.transfer")

#: how long a transfer waits for a dropped link to come back before it gives up
RECONNECT_WAIT = 180.0
OnChunk = Callable[[int], None]
T = TypeVar("T")


class BlobSender(Protocol):
    """Moves the rest of one file to the host's partial copy of it, and has the host check it."""

    via: str

    async def send(self, sha256: str, size: int, source: Path, offset: int, on_chunk: OnChunk) -> BlobState:
        """Send `source[offset:]`; the host's state of the file after it (complete once checked).
        A dropped link raises ConnectionFailed (or Timeout): what arrived is kept."""
        ...


class AgentApiSender:
    """PUT /v1/models/blobs/{sha256} on the host's agent (through its tunnel, for a box)."""

    via = "agent API"

    def __init__(self, client: AsyncAgentClient) -> None:
        self.client = client

    async def send(self, sha256: str, size: int, source: Path, offset: int, on_chunk: OnChunk) -> BlobState:
        return await self.client.send_blob(sha256, size, source, offset, on_chunk)


class ChecksumFailed(Failed):
    """A file arrived twice with another sha256 than its manifest names."""


def _lost(error: WorkbenchError) -> bool:
    """An error that a dropped or slow link explains (retry once it is back)."""
    return isinstance(error, ConnectionFailed | Timeout | Unavailable) or error.status in (502, 504)


#: the sender for a host, made once the host said where its partial files go
SenderFor = Callable[[PrepareAnswer], BlobSender]


async def push(client: AsyncAgentClient, sender_for: SenderFor, manifest: ModelManifest,
               source_of: Callable[[ModelFile], Path], *, meter: Meter | None = None,
               say: Callable[[str], None] = lambda line: None) -> int:
    """Put `manifest` in the host's cache from files on this machine; the bytes sent."""
    answer = await _retrying(lambda: client.prepare_model(manifest), "prepare", say)
    if answer.complete:
        return 0
    sender = sender_for(answer)
    by_sha: dict[str, ModelFile] = {}
    for item in manifest.files:
        if item.sha256 is not None:
            by_sha.setdefault(item.sha256, item)
    if meter is None:
        meter = Meter(answer.missing_bytes)
    sent = 0
    for sha256 in answer.missing:
        item = by_sha[sha256]
        offset = answer.partial.get(sha256, 0)
        sent += await _send_file(client, sender, item, source_of(item), offset, meter, say)
    await _retrying(lambda: client.commit_model(manifest), "commit", say)
    return sent


async def _send_file(client: AsyncAgentClient, sender: BlobSender, item: ModelFile, source: Path, offset: int,
                     meter: Meter, say: Callable[[str], None]) -> int:
    """Send one file from `offset` on until the host has it checked; the bytes sent (lost in a
    dropped link included, none of what had arrived)."""
    assert item.sha256 is not None
    sha256 = item.sha256
    size = item.size if item.size is not None else source.stat().st_size
    sent = 0
    this_try = 0
    mismatches = 0
    lost_since: float | None = None

    def counted(count: int) -> None:
        nonlocal sent, this_try
        sent += count
        this_try += count
        meter.add(count)

    while True:
        this_try, started_at = 0, offset
        try:
            if offset >= size:  # every byte is there: the host checks them
                state = await client.finish_blob(sha256, size)
            else:
                state = await sender.send(sha256, size, source, offset, counted)
        except BadRequest as error:  # the host discarded what arrived: its sha256 was not this file's
            mismatches += 1
            meter.add(-(offset + this_try))
            if mismatches >= 2:
                raise ChecksumFailed(f"{item.path} arrived twice with another sha256 than {sha256[:12]} "
                                     f"({error}); is the file changing on this machine? Nothing of it was "
                                     "kept") from None
            say(f"{item.path}: {error}; sending it once more")
            offset = 0
            continue
        except WorkbenchError as error:
            if not _lost(error):
                raise
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_WAIT:
                raise ConnectionFailed(f"the link dropped while sending {item.path} and did not come back "
                                       f"within {RECONNECT_WAIT:.0f} s: {error}") from None
            say(f"{item.path}: the link dropped ({error}); resuming once it is back")
            await asyncio.sleep(1.0)
            found = await _state(client, sha256)
            if found is None:
                meter.add(-this_try)
                continue
            state = found
            # what arrived counts as sent even if the drop came before its write was acknowledged;
            # what was lost on the way is sent again
            unacknowledged = max(0, (state.size - started_at) - this_try)
            sent += unacknowledged
            meter.add((state.size - started_at) - this_try)
        if state.complete:
            return sent
        if state.size > offset:
            lost_since = None
        offset = state.size


async def _state(client: AsyncAgentClient, sha256: str) -> BlobState | None:
    try:
        return await client.blob_state(sha256)
    except WorkbenchError as error:
        if _lost(error):
            return None
        raise


async def _retrying(work: Callable[[], Awaitable[T]], what: str, say: Callable[[str], None]) -> T:
    """`work()` again while the link is down (up to RECONNECT_WAIT)."""
    started = time.monotonic()
    while True:
        try:
            return await work()
        except WorkbenchError as error:
            if not _lost(error) or time.monotonic() - started > RECONNECT_WAIT:
                raise
            say(f"{what}: the link dropped ({error}); trying again")
            await asyncio.sleep(1.0)

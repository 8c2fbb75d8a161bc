"""Model versions into the caches of the hosts whose replicas mount them — once per host.

A replica that needs a model its host lacks waits for it: the reconciler reserves the placement
(`reserve`), the version goes to the host, and the replica starts there once it is in (an event
says so). Every transfer is one per (host, version), however many replicas or APIs wait for it.

How it gets there: workstation files are sent by this machine over the host's link (only the files
the host lacks; links choose SFTP or the agent's API). A hub repo or a URL is fetched by the host
itself when it reaches the source (it says so when asked); else the workstation's own host fetches
it once and sends it on. The hub token (HF_TOKEN) goes to the fetching agent for that fetch only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.weights.resolve import PlannedModel, hub_token, probe_url
from workbench.weights.transfer import push
from workbench.wire.errors import Failed, WorkbenchError
from workbench.wire.model_cache import Meter, ModelEvent

log = logging.getLogger("workbench.controller.model_sync")

RETRY_AFTER = 120.0  # seconds a host whose transfer failed gets no replica waiting for it
LOCAL = "local"  # the workstation's own host, which relays what a box cannot fetch itself

Key = tuple[str, str]  # (host, version id)


@dataclass
class Transfer:
    """One version on its way to one host."""

    host: str
    model: PlannedModel
    meter: Meter
    via: str = ""
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    listeners: list[Callable[[ModelEvent], None]] = field(default_factory=list)

    def text(self) -> str:
        via = f" ({self.via})" if self.via else ""
        return f"{self.model.manifest.name} → {self.host}: {self.meter.text()}{via}"

    def event(self, kind: str = "progress", message: str = "") -> ModelEvent:
        return ModelEvent(kind=kind, id=self.model.id, host=self.host,
                          message=message or self.text(), bytes_done=self.meter.done,
                          bytes_total=self.meter.total, rate=self.meter.rate, via=self.via or None)

    def tell(self, event: ModelEvent) -> None:
        for listener in list(self.listeners):
            listener(event)


class ModelSync:
    def __init__(self, fleet: Fleet, events: Events, token: Callable[[], str | None] = hub_token,
                 on_done: Callable[[], None] | None = None) -> None:
        self.fleet = fleet
        self.events = events
        self.token = token
        self.on_done = on_done
        self._transfers: dict[Key, Transfer] = {}
        self._ready: set[Key] = set()
        self._failed: dict[Key, tuple[float, str]] = {}
        #: (api, spec_hash) -> host -> replicas placed there that wait for their models
        self._reserved: dict[tuple[str, str], Counter[str]] = {}

    # -- what hosts have ---------------------------------------------------------------------
    def ready(self, host: str, models: Iterable[PlannedModel]) -> bool:
        return all((host, m.id) in self._ready for m in models)

    def failure(self, host: str, models: Iterable[PlannedModel]) -> str | None:
        """Why a recent transfer of one of `models` to `host` failed (None: none did)."""
        now = time.time()
        for model in models:
            failed = self._failed.get((host, model.id))
            if failed is not None and now - failed[0] < RETRY_AFTER:
                return failed[1]
        return None

    def forget(self, host: str) -> None:
        """What we knew `host` has may be wrong (it refused a replica): ask it again."""
        self._ready = {key for key in self._ready if key[0] != host}

    # -- reservations --------------------------------------------------------------------------
    def reserved(self, api: str, spec_hash: str) -> Counter[str]:
        for key in [k for k in self._reserved if k[0] == api and k[1] != spec_hash]:
            del self._reserved[key]  # an older version's
        return self._reserved.setdefault((api, spec_hash), Counter())

    def reserve(self, api: str, spec_hash: str, host: Host, models: list[PlannedModel]) -> None:
        """A replica of `api` goes to `host` once `models` are there: start what is missing."""
        self.reserved(api, spec_hash)[host.name] += 1
        for model in models:
            if (host.name, model.id) not in self._ready:
                self.start(host, model)
        waiting = [m.manifest.label for m in models if (host.name, m.id) not in self._ready]
        self.events.record("model", f"a replica of {api} on {host.name} waits for model {', '.join(waiting)}",
                           api=api, data={"host": host.name, "models": [m.id for m in models]})

    def release(self, api: str, spec_hash: str, host: str, count: int = 1) -> None:
        reserved = self.reserved(api, spec_hash)
        reserved[host] -= count
        if reserved[host] <= 0:
            del reserved[host]

    def describe(self, api: str, spec_hash: str) -> str:
        """What the API's waiting replicas wait for: "weights llm → box0: 120/200 MB, 85 MB/s, ETA 1 s"."""
        hosts = self._reserved.get((api, spec_hash), Counter())
        lines = [t.text() for (host, _), t in self._transfers.items() if host in hosts]
        return "; ".join(lines)

    # -- transfers -----------------------------------------------------------------------------
    def start(self, host: Host, model: PlannedModel) -> Transfer:
        """The transfer of `model` to `host` under way, or a new one."""
        key = (host.name, model.id)
        running = self._transfers.get(key)
        if running is not None:
            return running
        transfer = Transfer(host.name, model, Meter(model.manifest.size or None))
        self._transfers[key] = transfer
        transfer.task = asyncio.create_task(self._run(host, transfer),
                                            name=f"model-{host.name}-{model.id[:8]}")
        return transfer

    async def ensure(self, host: Host, model: PlannedModel,
                     on_event: Callable[[ModelEvent], None] | None = None) -> None:
        """Put `model` on `host` (joining a transfer under way); raises why it failed."""
        key = (host.name, model.id)
        self._failed.pop(key, None)
        transfer = self.start(host, model)
        if on_event is not None:
            transfer.listeners.append(on_event)
        try:
            assert transfer.task is not None
            await asyncio.shield(transfer.task)
        finally:
            if on_event is not None and on_event in transfer.listeners:
                transfer.listeners.remove(on_event)
        failed = self._failed.get(key)
        if failed is not None:
            raise Failed(failed[1])

    async def _run(self, host: Host, transfer: Transfer) -> None:
        key = (host.name, transfer.model.id)
        label = transfer.model.manifest.label
        try:
            sent = await self._put(host, transfer)
        except Exception as error:  # one failed transfer must not take the reconciler down
            message = f"model {label} could not get to {host.name}: {error}"
            self._failed[key] = (time.time(), message)
            self.events.record("model", message, level=logging.WARNING,
                               data={"host": host.name, "model": transfer.model.id})
            transfer.tell(transfer.event("error", message))
            if not isinstance(error, WorkbenchError):
                log.exception("model transfer to %s failed", host.name)
        else:
            self._ready.add(key)
            self._failed.pop(key, None)
            seconds = time.monotonic() - transfer.started
            if sent is not None:
                size = transfer.model.manifest.size
                self.events.record("model", f"model {label} is on {host.name}: {size / 1e6:.0f} MB in "
                                   f"{seconds:.1f} s via {transfer.via}", data={
                                       "host": host.name, "model": transfer.model.id, "bytes": size,
                                       "sent": sent, "seconds": round(seconds, 3), "via": transfer.via})
            transfer.tell(transfer.event("done", f"{label} is on {host.name}"))
        finally:
            self._transfers.pop(key, None)
            if self.on_done is not None:
                self.on_done()

    async def _put(self, host: Host, transfer: Transfer) -> int | None:
        """Get the version onto the host; the bytes this machine sent (None: it was there)."""
        client, model = host.client, transfer.model
        answer = await client.prepare_model(model.manifest)
        if answer.complete:
            return None
        transfer.meter.total = answer.missing_bytes or transfer.meter.total
        if model.source_root is not None:
            return await self._send(host, transfer, model, lambda item: model.local_file(item))
        token = self.token()
        url = probe_url(model.manifest)
        probe = await client.probe_source(url, token) if url else None
        if probe is not None and probe.reachable and probe.status is not None and probe.status < 400:
            transfer.via = "fetched by the host"
            async for event in client.fetch_model(model.manifest, token):
                transfer.meter.done, transfer.meter.rate = event.bytes_done, event.rate
                transfer.meter.total = event.bytes_total or transfer.meter.total
                if event.kind == "error":
                    raise Failed(event.message)
                transfer.tell(transfer.event())
            return 0
        local = self.fleet.hosts.get(LOCAL)
        reason = probe.detail if probe is not None else "no URL to probe"
        if local is None or local is host or not local.reachable:
            raise Failed(f"{host.name} cannot reach {url} ({reason}), and no workstation host can fetch it "
                         "for it")
        transfer.via = f"through {LOCAL}"
        log.info("%s cannot reach %s (%s): %s fetches it and sends it on", host.name, url, reason, LOCAL)
        await self.ensure(local, model)
        full = await local.client.model(model.id)
        blobs = Path((await local.client.models()).root) / "blobs"
        relayed = PlannedModel(full, model.mount)
        return await self._send(host, transfer, relayed, lambda item: blobs / str(item.sha256))

    async def _send(self, host: Host, transfer: Transfer, model: PlannedModel,
                    source_of: Callable[..., Path]) -> int:
        chosen: list[str] = []

        def sender_for(prepared):
            sender = host.link.blob_sender(host.client, prepared)
            chosen.append(sender.via)
            transfer.via = (f"{transfer.via}, " if transfer.via else "") + sender.via
            return sender

        def progress(line: str) -> None:
            log.info("%s → %s: %s", model.manifest.label, host.name, line)

        meter = transfer.meter
        task = asyncio.create_task(push(host.client, sender_for, model.manifest, source_of, meter=meter,
                                        say=progress))
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            transfer.tell(transfer.event())
        return task.result()

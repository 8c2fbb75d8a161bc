"""`workbench image prune`: remove the API images and bundles that no deployed version needs.

Per reachable host, of what its agent lists (only images workbench built for an API): an image
of an API that is no longer deployed goes; of a deployed API, all but the artifacts of its last
`keep` versions (the current one always among them) go. One a replica runs is never removed —
the agent refuses it, and it is not even asked.
"""

from __future__ import annotations

import asyncio

from workbench.controller.fleet import Fleet, Host
from workbench.controller.state import Store
from workbench.wire.agent import StoredArtifact
from workbench.wire.control import PruneBody, PrunedImage, PruneRequest
from workbench.wire.errors import WorkbenchError


def _verdict(store: Store, image: StoredArtifact, keep: int) -> str | None:
    """Why `image` goes, or None when it stays."""
    if image.in_use or image.api is None:
        return None
    record = store.get_api(image.api)
    if record is None:
        return "its API is not deployed"
    wanted = {record.artifact, *store.recent_artifacts(image.api, keep)}
    if image.artifact in wanted:
        return None
    return f"older than the last {keep} version{'s' if keep != 1 else ''}"


async def _prune_host(store: Store, host: Host, request: PruneRequest, body: PruneBody) -> None:
    try:
        images = await host.client.images()
    except WorkbenchError as error:
        body.errors[host.name] = str(error)
        return
    for image in images:
        why = _verdict(store, image, request.keep)
        if why is None:
            body.kept += 1
            continue
        size = image.size_bytes
        if not request.dry_run:
            try:
                removed = await host.client.remove_image(image.runtime, image.artifact)
            except WorkbenchError as error:  # in use since it was listed, or gone
                body.errors[host.name] = f"{image.artifact}: {error}"
                body.kept += 1
                continue
            size = removed.freed_bytes if removed.freed_bytes is not None else size
        body.removed.append(PrunedImage(host=host.name, runtime=image.runtime, artifact=image.artifact,
                                        api=image.api, size_bytes=size, why=why))


async def prune(store: Store, fleet: Fleet, request: PruneRequest) -> PruneBody:
    body = PruneBody()
    hosts = [h for h in fleet.hosts.values() if h.reachable]
    for host in fleet.hosts.values():
        if not host.reachable:
            body.errors[host.name] = f"{host.name} is not reachable; its images were not looked at"
    await asyncio.gather(*(_prune_host(store, h, request, body) for h in hosts))
    return body

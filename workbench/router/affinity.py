"""routing.policy: prefix — the key of a request, and the ring it picks a replica on.

The key is the first routing.affinity_prefix characters of the prompt (``prompt`` of a completion,
``messages`` of a chat, concatenated with their roles) or a header's value (``header:NAME``).
Requests that share a prompt prefix then meet the replica whose KV cache holds it; the bound on
loads (ring.py) keeps a hot prefix from piling onto one replica. A request without a key (no JSON
body, a body too large to keep, no such header) is picked by ewma.

Only APIs with this policy parse request bodies; every other route forwards them unread.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from workbench.spec.models import RoutingSpec

from .pool import EndpointState, Pool
from .ring import Ring, key_hash

if TYPE_CHECKING:  # (request.py imports api.py, which imports this)
    from .request import IncomingRequest


def prompt_text(payload: Any, limit: int) -> str | None:
    """The first `limit` characters of a request's prompt: a chat's messages (role and content,
    text parts of multi-part content), a completion's prompt (or its first, if a list), an
    embedding's input. None when the body has none."""
    if not isinstance(payload, dict):
        return None
    messages = payload.get("messages")
    if isinstance(messages, list) and messages:
        parts: list[str] = []
        size = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            text = _content_text(message.get("content"))
            part = f"{message.get('role', '')}\x1f{text}\x1e"
            parts.append(part)
            size += len(part)
            if size >= limit:
                break
        return "".join(parts)[:limit] if parts else None
    prompt = payload.get("prompt", payload.get("input"))
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) for t in prompt[:limit]):  # token ids
            return ",".join(str(t) for t in prompt[:limit])
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt:
        return prompt[:limit]
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        return "".join(p["text"] for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class Affinity:
    """One API's prefix affinity: its key settings, and its ring (rebuilt when the pool's eligible
    endpoints change)."""

    __slots__ = ("_header", "_ring", "_vnodes", "load_factor", "prefix")

    def __init__(self, routing: RoutingSpec) -> None:
        self.prefix = routing.affinity_prefix
        self.load_factor = routing.affinity_load_factor
        self._header = routing.affinity_header
        self._vnodes: dict[str, list[int]] = {}
        self._ring: Ring | None = None

    def key(self, request: IncomingRequest) -> int | None:
        """The request's key hashed onto the ring; None when it has none."""
        header = self._header
        if header is not None:
            for name, value in request.headers:
                if name.lower() == header:
                    return key_hash(value.encode("utf-8", "surrogateescape")) if value else None
            return None
        payload = request.payload
        if payload is None:
            body = request.body
            if not isinstance(body, bytes) or not body:
                return None  # none, or streamed (too large to keep): no key
            try:
                payload = request.payload = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                return None
        text = prompt_text(payload, self.prefix)
        return key_hash(text.encode("utf-8", "surrogatepass")) if text else None

    def pick(self, pool: Pool, key: int, tried: Collection[EndpointState],
             now: float) -> EndpointState | None:
        candidates = pool.eligible(now)  # the pool's own list: a new object whenever it changes
        ring = self._ring
        if ring is None or ring.members is not candidates:
            ring = self._ring = Ring(candidates, self._vnodes)
            live = {s.replica_id for s in pool.endpoints}
            for rid in [r for r in self._vnodes if r not in live]:
                del self._vnodes[rid]
        return ring.pick(key, self.load_factor, tried)

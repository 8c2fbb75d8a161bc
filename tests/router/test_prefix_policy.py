"""routing.policy: prefix — the key of a request (ring.py, affinity.py): consistent hashing with
bounded loads, unit-tested on endpoint states, and through a real router to real replicas."""

from __future__ import annotations

import collections
import math
import random
from typing import Any

import httpx

from tests.router.conftest import replica_id
from workbench.router.affinity import Affinity, prompt_text
from workbench.router.pool import EndpointState, Pool
from workbench.router.request import IncomingRequest
from workbench.router.ring import Ring, key_hash
from workbench.router.types import Endpoint
from workbench.spec.models import RoutingSpec


def pool_of(n: int, first: int = 0) -> Pool:
    pool = Pool()
    pool.set([Endpoint(replica_id=f"r{i}", url=f"http://127.0.0.1:{1000 + i}")
              for i in range(first, first + n)])
    return pool


def owners(members: list[EndpointState], keys: list[int]) -> list[str]:
    ring = Ring(members, {})
    picked = [ring.pick(k, 1.25, ()) for k in keys]
    return [s.replica_id for s in picked if s is not None]


KEYS = [key_hash(f"system prompt {i}".encode()) for i in range(4000)]


def test_prompt_text_of_chat_completion_tokens_and_parts() -> None:
    chat = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user",
                          "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]}]}
    assert prompt_text(chat, 256) == "system\x1fYou are terse.\x1euser\x1fHi\x1e"
    assert prompt_text(chat, 10) == "system\x1fYou"
    assert prompt_text({"prompt": "Alice was beginning"}, 5) == "Alice"
    assert prompt_text({"prompt": ["first", "second"]}, 256) == "first"
    assert prompt_text({"prompt": [1, 2, 3, 4]}, 2) == "1,2"
    assert prompt_text({"input": "embed me"}, 256) == "embed me"
    for none in ({}, {"messages": []}, {"prompt": ""}, ["x"], None, {"messages": ["x"]}):
        assert prompt_text(none, 256) is None


def test_a_key_keeps_its_replica_and_keys_spread_evenly() -> None:
    members = pool_of(4).endpoints
    first = owners(members, KEYS)
    assert first == owners(members, KEYS)  # deterministic (and across processes: BLAKE2b)
    shares = collections.Counter(first)
    assert all(0.15 < shares[f"r{i}"] / len(KEYS) < 0.35 for i in range(4)), shares


def test_a_replica_joining_or_leaving_moves_only_its_share() -> None:
    four = pool_of(4).endpoints
    five = [*four, *pool_of(1, first=4).endpoints]
    before, after = owners(four, KEYS), owners(five, KEYS)
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert all(a == "r4" for _, a in moved)  # every key that moved went to the new replica
    assert 0.12 < len(moved) / len(KEYS) < 0.28, len(moved)  # about its 1/5 share
    three = [s for s in four if s.replica_id != "r2"]
    left = owners(three, KEYS)
    changed = [(b, a) for b, a in zip(before, left, strict=True) if b != a]
    assert changed and all(b == "r2" for b, _ in changed)  # only r2's keys moved


def test_a_replica_at_its_bound_spills_to_the_next_on_the_ring() -> None:
    members = pool_of(4).endpoints
    ring = Ring(members, {})
    key = KEYS[0]
    home = ring.pick(key, 1.25, ())
    assert home is not None
    home.in_flight = 3  # bound: ceil(1.25 x (3 + 1) / 4) = 2
    spilled = ring.pick(key, 1.25, ())
    assert spilled is not None and spilled is not home
    home.in_flight = 0  # under the bound again
    assert ring.pick(key, 1.25, ()) is home
    assert ring.pick(key, 1.25, (home,)) not in (home, None)  # a retry goes elsewhere
    assert ring.pick(key, 1.25, tuple(members)) is None


def test_no_replica_takes_more_than_the_bound_under_a_hot_key() -> None:
    rng = random.Random(12)
    members = pool_of(4).endpoints
    ring = Ring(members, {})
    hot = KEYS[7]
    for _ in range(400):  # one hot prefix, requests arriving and finishing at random
        if rng.random() < 0.3:
            busy = [s for s in members if s.in_flight]
            if busy:
                rng.choice(busy).in_flight -= 1
        total = sum(s.in_flight for s in members)
        chosen = ring.pick(hot, 1.25, ())
        assert chosen is not None
        chosen.in_flight += 1
        assert chosen.in_flight <= math.ceil(1.25 * (total + 1) / 4)


def request(body: bytes | None = None, headers: list[tuple[str, str]] | None = None) -> IncomingRequest:
    return IncomingRequest("POST", "/", headers or [], b"id", len(body or b""), bool(body), body)


def test_the_key_from_the_body_or_a_header_and_none_without() -> None:
    by_prompt = Affinity(RoutingSpec(policy="prefix", affinity_prefix=5))
    alice = by_prompt.key(request(b'{"prompt": "Alice was"}'))
    assert alice is not None and alice == by_prompt.key(request(b'{"prompt": "Alice!"}'))
    assert by_prompt.key(request(b'{"prompt": "Alice"}')) != by_prompt.key(request(b'{"prompt": "Bob"}'))
    for keyless in (None, b"not json", b'{"x": 1}', b"[1]"):
        assert by_prompt.key(request(keyless)) is None
    by_header = Affinity(RoutingSpec(policy="prefix", affinity="header:X-Session-ID"))
    assert by_header.key(request(b"{}", [("x-session-id", "abc")])) == key_hash(b"abc")
    assert by_header.key(request(b'{"prompt": "Alice"}')) is None


def test_prefix_policy_through_the_router(router_server: Any, replicas: Any) -> None:
    reps = [replicas(f"rep{i}") for i in range(3)]
    srv = router_server()
    srv.add_api("lm", reps, routing={"policy": "prefix", "affinity_prefix": 32})
    srv.add_api("chat", reps, routing={"policy": "prefix", "affinity": "header:X-Session-ID"})
    prompts = [f"shared system prompt number {i:02d} " + "x" * 40 for i in range(6)]
    homes: dict[str, set[str]] = collections.defaultdict(set)
    with httpx.Client(timeout=30) as client:
        for round_ in range(5):
            for prompt in prompts:
                answer = client.post(f"{srv.url}/lm/", json={"prompt": prompt + f" user turn {round_}"})
                assert answer.status_code == 200, answer.text
                homes[prompt].add(answer.headers["x-workbench-replica"])
        assert all(len(h) == 1 for h in homes.values()), homes  # each prefix kept its replica
        assert len({next(iter(h)) for h in homes.values()}) >= 2  # and they spread
        sessions = {s: {client.post(f"{srv.url}/chat/", json={}, headers={"X-Session-ID": s})
                        .headers["x-workbench-replica"] for _ in range(4)} for s in ("a", "b", "c", "d")}
        assert all(len(r) == 1 for r in sessions.values()), sessions
        # keyless (no JSON prompt): ewma picks, so it spreads over the replicas
        keyless = {client.post(f"{srv.url}/lm/", content=b"raw").headers["x-workbench-replica"]
                   for _ in range(40)}
        assert len(keyless) >= 2 and keyless <= {replica_id(r) for r in reps}

"""Active health checks take a replica that stops being ready out of rotation, and back."""

from __future__ import annotations

import signal

import httpx

from tests.router.conftest import replica_id, wait_for


def test_unready_replica_leaves_rotation_and_returns(replicas, router_server):
    a, b = replicas("a"), replicas("b")
    srv = router_server()
    srv.add_api("echo", [a, b])
    a.proc.send_signal(signal.SIGSTOP)  # stops answering /readyz (and everything else)
    try:
        state = srv.router._apis["echo"].pool.by_id[replica_id(a)]
        wait_for(lambda: not state.healthy, 10, "health check failing")
        seen = {httpx.post(srv.url + "/echo", json={}).headers["x-workbench-replica"] for _ in range(20)}
        assert seen == {replica_id(b)}
    finally:
        a.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: state.healthy, 10, "health check passing again")

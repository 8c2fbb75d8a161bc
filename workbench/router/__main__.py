"""``python -m workbench.router --api NAME=URL[,URL...] [--policy P] [--port PORT | --fd FD]``

The router alone, with static endpoints (no controller): for benchmarks and tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

import uvicorn

from workbench.spec.models import RoutingSpec

from .router import Router
from .types import ApiRoute, Endpoint


def build(apis: list[str], routing: RoutingSpec, max_body_bytes: int) -> Router:
    router = Router()
    for item in apis:
        name, _, urls = item.partition("=")
        if not name or not urls:
            raise SystemExit(f"--api wants NAME=URL[,URL...], not {item!r}")
        router.set_route(ApiRoute(name=name, routing=routing, max_body_bytes=max_body_bytes))
        router.set_endpoints(
            name, [Endpoint(replica_id=f"{name}-{i}", url=url) for i, url in enumerate(urls.split(","))]
        )
    return router


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.router", description=__doc__.splitlines()[0])
    parser.add_argument("--api", action="append", default=[], help="NAME=URL[,URL...] (repeatable)")
    policies = ["p2c", "least_outstanding", "round_robin", "ewma"]
    parser.add_argument("--policy", default="ewma", choices=policies)
    parser.add_argument("--routing", default="{}", help="RoutingSpec fields as JSON")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--host", default="127.0.0.1")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=8765)
    where.add_argument("--fd", type=int)
    args = parser.parse_args(argv)
    routing = RoutingSpec(**{"policy": args.policy, **json.loads(args.routing)})
    router = build(args.api, routing, args.max_body_bytes)
    config = uvicorn.Config(
        router, host=args.host, port=args.port, fd=args.fd, log_level="warning", access_log=False,
        lifespan="on", loop="auto", http="auto", server_header=False, proxy_headers=False,
    )
    server = uvicorn.Server(config)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        server.run(sockets=[sock])
    else:
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

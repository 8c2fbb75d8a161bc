"""`python -m workbench.controller serve [--host 127.0.0.1] [--port 8765] [--usage-retention 30d]`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.controller")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="run the controller (control API + router)")
    serve_parser.add_argument("--host", default="127.0.0.1",
                              help="address to bind (default 127.0.0.1; others require API keys)")
    serve_parser.add_argument("--port", type=int, default=None,
                              help="port (default $WORKBENCH_PORT or 8765)")
    serve_parser.add_argument("--usage-retention", default=None,
                              help="how long usage rollups are kept (default $WORKBENCH_USAGE_RETENTION "
                                   "or 30d)")
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    from workbench.controller.daemon import serve

    return serve(args.host, args.port, args.usage_retention)


if __name__ == "__main__":
    sys.exit(main())

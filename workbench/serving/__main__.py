"""``python -m workbench.serving [--host HOST] [--port PORT | --fd FD] [--replica-id ID]``

Serves one replica of the API described by the RuntimeConfig JSON in
``$WORKBENCH_RUNTIME_CONFIG``. Exit codes: 0 after SIGTERM/SIGINT and a graceful drain;
2 for bad arguments or a missing/invalid config; 3 when the predictor fails to load;
4 when the address cannot be listened on.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from pydantic import ValidationError

from workbench import __version__
from workbench.wire.replica import CONTAINER_PORT, RUNTIME_CONFIG_ENV, RuntimeConfig

from .logs import log, log_exception, set_replica_id
from .server import EXIT_LOAD_FAILED, serve

EXIT_USAGE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.serving",
        description=f"workbench predictor runtime {__version__}: serves one replica; "
        f"reads its RuntimeConfig (JSON) from ${RUNTIME_CONFIG_ENV}.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=CONTAINER_PORT, help=f"port (default {CONTAINER_PORT})")
    where.add_argument("--fd", type=int, help="serve on this already bound listening socket")
    parser.add_argument("--replica-id", help="replica id, shown in log lines")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    return args


def read_config() -> RuntimeConfig | str:
    """The RuntimeConfig from the environment, or why there is none."""
    raw = os.environ.get(RUNTIME_CONFIG_ENV)
    if not raw or not raw.strip():
        return f"${RUNTIME_CONFIG_ENV} is not set: it must hold the replica's RuntimeConfig as JSON"
    try:
        return RuntimeConfig.model_validate_json(raw)
    except ValidationError as exc:
        return f"invalid ${RUNTIME_CONFIG_ENV}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_replica_id(args.replica_id)
    cfg = read_config()
    if isinstance(cfg, str):
        log(cfg, tagged=False)
        return EXIT_USAGE
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        os.chdir(cfg.project_dir)
    except OSError as exc:
        log_exception("predictor failed to load", exc, tagged=False)
        return EXIT_LOAD_FAILED
    return serve(cfg, host=args.host, port=args.port, fd=args.fd)


def exit_now(code: int, grace: float = 1.0) -> None:
    """Exit with `code`; user threads still running after `grace` seconds (a predict past
    graceful_shutdown, an ``__init__`` past startup_timeout) cannot keep the process alive."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if len(stuck) > 1:
        log(f"exiting with {len(stuck) - 1} thread(s) of user code still running")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_now(main())

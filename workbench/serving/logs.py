"""Log lines of the predictor runtime: plain text on stderr, one line each."""

from __future__ import annotations

import sys
import traceback

_replica = ""


def set_replica_id(replica_id: str | None) -> None:
    """Name the replica in the following log lines (``workbench: [id] ...``)."""
    global _replica
    _replica = f"[{replica_id}] " if replica_id else ""


def log(message: str, *, tagged: bool = True) -> None:
    """Write ``workbench: message`` to stderr and flush it at once."""
    tag = _replica if tagged else ""
    sys.stderr.write(f"workbench: {tag}{message}\n")
    sys.stderr.flush()


def log_exception(message: str, exc: BaseException, *, tagged: bool = True) -> None:
    """Write the full traceback of `exc`, then ``message: ExcType: text`` on one line."""
    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    log(f"{message}: {describe(exc)}", tagged=tagged)


def describe(exc: BaseException) -> str:
    """``ExcType: message``, the form used in error responses and summaries."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

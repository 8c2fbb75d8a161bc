"""`python -m workbench.agent.logstamp FILE`: copy stdin to FILE, each line led by its time.

A process-runtime replica writes its output into a pipe read by this small process (in its own
session, so it outlives an agent restart, as the replica does), which appends
``2026-01-02T13:23:37.123456Z <line>`` to the replica's log: the time `workbench logs -t` shows
and `--since` selects by, as Docker keeps for a container. It ends when the replica (and every
process it started) has closed its output.
"""

from __future__ import annotations

import os
import sys

from workbench.agent.logfiles import stamp_now


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m workbench.agent.logstamp FILE", file=sys.stderr)
        return 2
    out = os.open(argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for line in sys.stdin.buffer:
            os.write(out, stamp_now() + b" " + (line if line.endswith(b"\n") else line + b"\n"))
    finally:
        os.close(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Start, find and stop the agent on a box: `systemd --user` when it runs, else a pidfile daemon.

Every command is an argv list; the Python snippets are fixed text that receive paths as argv.
"""

from __future__ import annotations

import shlex

from workbench.remote.connection import SSHHost
from workbench.remote.errors import RemoteCommandError
from workbench.remote.layout import UNIT_NAME, Layout

#: argv: LOG PROGRAM ARGS... — start PROGRAM in its own session, output to LOG.
_LAUNCH = """
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True, close_fds=True)
"""

#: argv: AGENT_HOME [stop] — print the live agent's pid (and stop it when asked).
_PID = """
import os, signal, sys, time
try:
    pid = int(open(os.path.join(sys.argv[1], "agent.pid")).read().strip())
    alive = b"workbench.agent" in open(f"/proc/{pid}/cmdline", "rb").read()
except (OSError, ValueError):
    alive = False
if not alive:
    sys.exit(0)
print(pid)
if sys.argv[2:] == ["stop"]:
    os.kill(pid, signal.SIGTERM)
    for _ in range(150):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
"""


def serve_argv(layout: Layout, port: int) -> list[str]:
    return [str(layout.python), "-m", "workbench.agent", "serve", "--home", str(layout.root),
            "--port", str(port)]


def has_systemd(host: SSHHost) -> bool:
    """True when a `systemd --user` instance answers for this user."""
    status, _, _ = host.run(["systemctl", "--user", "show-environment"], timeout=30)
    return status == 0


def unit_text(layout: Layout, port: int) -> str:
    return (
        "[Unit]\nDescription=workbench agent\nAfter=network.target\n\n"
        "[Service]\n"
        f"ExecStart={shlex.join(serve_argv(layout, port))}\n"
        "Restart=on-failure\nRestartSec=2\n"
        "# replicas outlive the agent; it re-adopts them when it starts again\n"
        "KillMode=process\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


def running_pid(host: SSHHost, layout: Layout) -> int | None:
    status, out, _ = host.run(["python3", "-c", _PID, str(layout.root)], timeout=30)
    return int(out.strip()) if status == 0 and out.strip().isdigit() else None


def start(host: SSHHost, layout: Layout, port: int) -> str:
    """Start the agent; returns how ("systemd --user" or "daemon")."""
    if has_systemd(host):
        host.run(["mkdir", "-p", str(layout.unit.parent)], check=True)
        with host.sftp() as sftp, sftp.open(str(layout.unit), "w") as handle:
            handle.write(unit_text(layout, port))
        host.run(["systemctl", "--user", "daemon-reload"], check=True)
        host.run(["systemctl", "--user", "enable", UNIT_NAME], check=True)
        host.run(["systemctl", "--user", "restart", UNIT_NAME], check=True)
        host.run(["loginctl", "enable-linger"], timeout=30)  # keeps it running after logout, if permitted
        return "systemd --user"
    argv = [str(layout.python), "-c", _LAUNCH, str(layout.log), *serve_argv(layout, port)]
    status, out, err = host.run(argv, timeout=60)
    if status != 0:
        raise RemoteCommandError(argv[:3], status, out, err)
    return "daemon"


def stop(host: SSHHost, layout: Layout) -> bool:
    """Stop the agent (replicas keep running). False when none was running."""
    stopped = False
    if host.run(["test", "-f", str(layout.unit)])[0] == 0:
        host.run(["systemctl", "--user", "disable", "--now", UNIT_NAME], timeout=60)
        stopped = True
    status, out, _ = host.run(["python3", "-c", _PID, str(layout.root), "stop"], timeout=60)
    return stopped or (status == 0 and out.strip().isdigit())


def remove_unit(host: SSHHost, layout: Layout) -> None:
    if host.run(["test", "-f", str(layout.unit)])[0] == 0:
        host.run(["rm", "-f", "--", str(layout.unit)])
        host.run(["systemctl", "--user", "daemon-reload"], timeout=60)

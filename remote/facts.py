"""What the box is: OS, arch, its python3's version and glibc, HOME and free disk (one SSH command)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from workbench.remote.connection import SSHHost

#: Runs under the box's python3; fixed text, never built from input.
_PROBE = """
import json, os, platform, shutil, sys
home = os.path.expanduser("~")
print(json.dumps({
    "system": platform.system(), "release": platform.release(), "machine": platform.machine(),
    "python": platform.python_version(), "executable": sys.executable,
    "glibc": platform.libc_ver()[1] or "", "home": home,
    "disk_free": shutil.disk_usage(home).free,
}))
"""


@dataclass(frozen=True)
class BoxFacts:
    system: str
    release: str
    machine: str
    python: str | None  # None: no usable python3
    glibc: str
    home: str
    disk_free: int | None

    @property
    def python_tuple(self) -> tuple[int, int]:
        if not self.python:
            return (0, 0)
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)


def probe(host: SSHHost, python: str = "python3") -> BoxFacts:
    """Ask the box; falls back to `uname` when python3 is missing or broken."""
    status, out, _ = host.run([python, "-c", _PROBE], timeout=30)
    if status == 0:
        data = json.loads(out.strip().splitlines()[-1])
        return BoxFacts(data["system"], data["release"], data["machine"], data["python"],
                        data["glibc"], data["home"], int(data["disk_free"]))
    _, uname, _ = host.run(["uname", "-s", "-r", "-m"], timeout=30)
    parts = [*uname.split(), "?", "?", "?"][:3]
    _, home, _ = host.run(["pwd"], timeout=30)
    return BoxFacts(parts[0], parts[1], parts[2], None, "", home.strip(), None)

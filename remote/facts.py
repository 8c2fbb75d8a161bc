"""What the box is: OS, arch, its python3's version and glibc, HOME and free disk (one SSH command)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

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
    #: why python3 is not usable when it ran but answered something other than the probe's JSON
    python_problem: str | None = None

    @property
    def python_tuple(self) -> tuple[int, int]:
        if not self.python:
            return (0, 0)
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)


_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S*")
_TEXT_FIELDS = ("system", "release", "machine", "python", "glibc", "home")


def probe(host: SSHHost, python: str = "python3") -> BoxFacts:
    """Ask the box; falls back to `uname` when python3 is missing, broken, or answers something
    that is not the probe's JSON (then `python_problem` says what it answered)."""
    status, out, _ = host.run([python, "-c", _PROBE], timeout=30)
    problem = None
    if status == 0:
        facts = _parse(out)
        if facts is not None:
            return facts
        shown = out.strip()[-200:] or "nothing"
        problem = f"{python} ran but did not answer as Python does (it printed {shown!r})"
    _, uname, _ = host.run(["uname", "-s", "-r", "-m"], timeout=30)
    parts = [*uname.split(), "?", "?", "?"][:3]
    _, home, _ = host.run(["pwd"], timeout=30)
    return BoxFacts(parts[0], parts[1], parts[2], None, "", home.strip(), None, problem)


def _parse(out: str) -> BoxFacts | None:
    """The probe's JSON line, or None when the output is anything else."""
    lines = out.strip().splitlines()
    try:
        data: Any = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in _TEXT_FIELDS):
        return None
    free = data.get("disk_free")
    if not isinstance(free, int) or isinstance(free, bool) or not _VERSION.fullmatch(data["python"]):
        return None
    return BoxFacts(data["system"], data["release"], data["machine"], data["python"],
                    data["glibc"], data["home"], free)

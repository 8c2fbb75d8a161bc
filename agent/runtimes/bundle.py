"""Process-runtime builds: a build context becomes bundles/<artifact>/ with its own venv."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from workbench.agent.buildctx import BuildSpec, extract_context, inspect_context

from workbench.wire.agent import BuildEvent
from workbench.wire.errors import Failed

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class BundleBuildFailed(Failed):
    """A step of a process-runtime bundle build failed (the message names it)."""


def artifact_lock(key: str) -> threading.Lock:
    """One lock per artifact, so two builds of the same artifact never overlap."""
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def agent_site_dirs() -> list[str]:
    """The agent's own site-packages dirs (user site included) for the bundle's .pth file."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def venv_site_packages(venv: Path) -> Path:
    v = sys.version_info
    return venv / "lib" / f"python{v.major}.{v.minor}" / "site-packages"


def _inside(root: Path, rel: str, what: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BundleBuildFailed(f"{what} {rel!r} points outside the build context")
    return path


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[BuildEvent]:
    """Run argv, streaming its output lines as log events; raise BundleBuildFailed on failure."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    except OSError as e:
        raise BundleBuildFailed(f"cannot run {argv[0]}: {e}") from e
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            yield BuildEvent(kind="log", message=raw.decode(errors="replace").rstrip())
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        raise BundleBuildFailed(f"{' '.join(argv)} exited with code {code}")


def _fix_paths(venv: Path, old: str, new: str) -> None:
    """Rewrite the tmp dir path in venv/bin scripts (shebangs, activate) after the rename."""
    for f in (venv / "bin").iterdir():
        if f.is_file() and not f.is_symlink():
            try:
                data = f.read_bytes()
            except OSError:
                continue
            if old.encode() in data:
                f.write_bytes(data.replace(old.encode(), new.encode()))


class BundleBuilder:
    """Builds bundles under `bundles_dir`; each bundle is complete or absent."""

    def __init__(self, bundles_dir: Path) -> None:
        self.bundles_dir = bundles_dir

    def path(self, artifact: str) -> Path:
        return self.bundles_dir / artifact.replace("/", "_")

    def exists(self, artifact: str) -> bool:
        return (self.path(artifact) / "venv" / "bin" / "python").exists()

    def build(self, context_path: str, artifact: str) -> Iterator[BuildEvent]:
        lock = artifact_lock("process:" + artifact)
        with lock:
            if self.exists(artifact):
                yield BuildEvent(kind="done", artifact=artifact, cached=True, message="bundle exists")
                return
            final = self.path(artifact)
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                yield from self._build_into(Path(context_path), tmp)
                os.rename(tmp, final)
                _fix_paths(final / "venv", str(tmp), str(final))
            except BundleBuildFailed as e:
                yield BuildEvent(kind="error", message=str(e))
                return
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            yield BuildEvent(kind="done", artifact=artifact, message=f"bundle {final}")

    def _build_into(self, context: Path, root: Path) -> Iterator[BuildEvent]:
        spec: BuildSpec
        try:
            spec, _ = inspect_context(context)
        except ValueError as e:
            raise BundleBuildFailed(str(e)) from e
        needs_pip = bool(spec.requirements or spec.pip)
        total = 3 + len(spec.build_commands) if needs_pip else 2 + len(spec.build_commands)
        step = 1
        yield BuildEvent(kind="step", step=step, total_steps=total, message="extract context")
        root.mkdir(parents=True)
        extract_context(context, root)
        project = root / "project"
        project.mkdir(exist_ok=True)

        step += 1
        venv = root / "venv"
        yield BuildEvent(kind="step", step=step, total_steps=total, message="create venv")
        argv = [sys.executable, "-m", "venv", str(venv)]
        if not needs_pip:
            argv.insert(3, "--without-pip")
        yield from _run(argv, root, dict(os.environ))
        pth = venv_site_packages(venv) / "zz-workbench-agent.pth"
        pth.write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in agent_site_dirs()))

        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if spec.ca_bundle and (root / spec.ca_bundle).is_file():
            ca = str(_inside(root, spec.ca_bundle, "ca_bundle"))
            env["PIP_CERT"] = ca
            env["SSL_CERT_FILE"] = ca
        python = str(venv / "bin" / "python")
        if needs_pip:
            step += 1
            yield BuildEvent(kind="step", step=step, total_steps=total, message="install requirements")
            pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            if spec.offline:
                pip.append("--no-index")
            if spec.wheelhouse:
                pip += ["--find-links", str(_inside(root, spec.wheelhouse, "wheelhouse"))]
            for req in spec.requirements:
                pip += ["-r", str(_inside(root, req, "requirements"))]
            pip += spec.pip
            yield from _run(pip, root, env)

        for argv in spec.build_commands:
            step += 1
            yield BuildEvent(kind="step", step=step, total_steps=total, message="run " + " ".join(argv))
            yield from _run(argv, project, env)

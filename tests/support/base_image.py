"""The Python base image `scripts/setup` made available, for tests that build FROM it directly.

setup pulls ``python:3.11-slim`` where a registry answers and bootstraps
``workbench/python:3.11-bookworm`` from Debian packages where none does; the agent resolves an
image's base the same way round (the pulled image when the engine has it, else the bootstrapped
one). Tests call :func:`available_base_image` instead of naming either tag, so the suite passes on a
machine that could pull as well as on one that could not.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.real_parts import IN_CI, require_docker
from workbench.wire.replica import BOOTSTRAP_BASE_IMAGE, DEFAULT_BASE_IMAGE

PULLED = DEFAULT_BASE_IMAGE
BOOTSTRAPPED = BOOTSTRAP_BASE_IMAGE


def has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def available_base_image() -> str:
    """python:3.11-slim when the engine has it, else the bootstrapped image; neither: a failure
    under CI=true (scripts/setup makes one), a skip elsewhere."""
    require_docker()
    for tag in (PULLED, BOOTSTRAPPED):
        if has_image(tag):
            return tag
    why = f"neither {PULLED} nor {BOOTSTRAPPED} is in the Docker engine (run scripts/setup)"
    if IN_CI:
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def layers(tag: str) -> list[str]:
    """The image's filesystem layers (RootFS diff ids), bottom first."""
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return list(json.loads(out))


def built_from(image: str, base: str) -> bool:
    """Whether `image` was built FROM `base`: its bottom layers are exactly the base's."""
    below = layers(base)
    return layers(image)[: len(below)] == below

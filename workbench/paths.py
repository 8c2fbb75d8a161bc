"""Where workbench keeps its files on the workstation ($WORKBENCH_HOME overrides everything)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DEFAULT_AGENT_PORT = 8770


def home() -> Path:
    """The workstation's data folder: $WORKBENCH_HOME, else the platform's user data dir."""
    override = os.environ.get("WORKBENCH_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir("workbench"))


def local_agent_home() -> Path:
    return home() / "agent"


def cache_dir() -> Path:
    override = os.environ.get("WORKBENCH_HOME")
    return Path(override) / "cache" if override else Path(platformdirs.user_cache_dir("workbench"))

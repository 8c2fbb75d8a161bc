"""Fixtures: a real controller (subprocess) with its own home, agent and port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench


@pytest.fixture
def controller(workbench: Workbench) -> Iterator[Controller]:
    """A started controller; afterwards it is stopped and its agent, replicas and containers removed."""
    ctl = Controller(workbench)
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()
        # the workbench fixture's cleanup then kills the agent, replica processes and containers

"""`python -m workbench.tui`: the terminal UI (what `workbench web` runs per browser session)."""

from workbench.tui.app import run

run()

"""The Textual terminal UI (see issue: the terminal UI)."""

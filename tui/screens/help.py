"""`?`: every binding that applies here, and `:` the command line (`:hosts`, `:apis`, `:logs NAME`)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Static

COMMANDS = [(":hosts", "the fleet screen"), (":apis", "the APIs screen"),
            (":api NAME", "open one API"), (":logs NAME", "follow an API's log"),
            (":deploy [PATH]", "deploy a workbench.yaml"), (":theme NAME", "switch theme"),
            (":q", "quit")]
#: the keys every table takes (LiveTable's, which the help does not list one by one)
TABLE_KEYS = [("↑ ↓  j k", "move"), ("g G", "first, last"), ("← →", "scroll a wide table")]


class HelpScreen(ModalScreen[None]):
    """Every key that applies on the screen below, then the keys of every screen, then `:`."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close")]

    def __init__(self, under: Screen[Any]):
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="help"):
            yield Static("[b]Keys[/b]  (esc closes; ↑/↓ scroll)")
            table: DataTable[Any] = DataTable(id="bindings", show_cursor=False)
            table.add_columns("KEY", "ACTION", "WHERE")
            yield table

    def on_mount(self) -> None:
        table = self.query_one("#bindings", DataTable)
        seen: set[tuple[str, str]] = set()
        groups: list[tuple[str, list[Binding]]] = [(screen_name(self.under), _bindings(self.under)),
                                                   ("everywhere", _bindings(self.app))]
        for where, bindings in groups:
            for binding in bindings:
                key = self.app.get_key_display(binding)
                if (key, binding.action) in seen or not binding.description:
                    continue
                seen.add((key, binding.action))
                table.add_row(key, binding.description, where)
        table.add_row("ctrl+p", "command palette (themes too)", "everywhere")
        for key, what in TABLE_KEYS:
            table.add_row(key, what, "tables")
        for command, what in COMMANDS:
            table.add_row(command, what, "command line")
        table.focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


def screen_name(screen: Screen[Any]) -> str:
    """What the user calls the screen: its HELP_NAME (e.g. "API detail"), not its class."""
    return str(getattr(screen, "HELP_NAME", "") or "this screen")


def _bindings(node: Any) -> list[Binding]:
    """The bindings workbench's own classes declare for `node` (Textual's built-in ones, such as
    tab and ctrl+c/super+c, are not ours to list)."""
    out: list[Binding] = []
    for cls in type(node).__mro__:
        if not cls.__module__.startswith("workbench.tui"):
            continue
        for item in cls.__dict__.get("BINDINGS", []):
            if isinstance(item, Binding):
                for key in item.key.split(","):
                    out.append(Binding(key.strip(), item.action, item.description, item.show,
                                       item.key_display))
    return out


class CommandScreen(ModalScreen[str | None]):
    """A one-line prompt at the bottom, like k9s's `:`."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="hosts · apis · api NAME · logs NAME · deploy PATH · q", id="command")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip().lstrip(":"))

    def action_cancel(self) -> None:
        self.dismiss(None)

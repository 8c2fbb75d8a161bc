"""Options every command shares, and the Typer command classes whose help shows flags as flags.

Typer's Rich help prints each option's type, flags included (``--json <bool>``, ``--help <bool>``):
a flag takes no value, so :class:`FlagsCommand` and :class:`FlagsGroup` give every flag an empty
metavar, and the help reads ``--json  print machine-readable JSON``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

JsonOption = Annotated[bool, typer.Option("--json", help="print machine-readable JSON (errors too: "
                                          '{"error": ...})')]
OutputOption = Annotated[Literal["wide", "name"] | None, typer.Option(
    "--output", "-o", help="wide: more columns; name: only the names, one per line")]


def _flags_take_no_value(params: list[Any]) -> None:
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", None) is None:
            param.metavar = ""


class FlagsCommand(TyperCommand):
    """A command whose help shows no value for a flag (`--help` included)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        _flags_take_no_value(params)
        return params


class FlagsGroup(TyperGroup):
    """A group whose help shows no value for a flag (its commands take FlagsCommand as `cls`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        _flags_take_no_value(params)
        return params

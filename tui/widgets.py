"""Small renderables and widgets: bars, sparklines, the disconnected banner, the key bar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static
from workbench.tui.fmt import NA, frozen

_BLOCKS = "▁▂▃▄▅▆▇█"


def bar(value: float | None, maximum: float | None, width: int = 10, label: str | None = None) -> Text:
    """A horizontal bar `width` cells wide; N/A when the value or its maximum is unknown."""
    if value is None or not maximum:
        return Text(NA.ljust(width), style="dim")
    fraction = min(max(value / maximum, 0.0), 1.0)
    filled = round(fraction * width)
    style = "green" if fraction < 0.6 else "yellow" if fraction < 0.85 else "red"
    text = Text()
    text.append("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    if label is not None:
        text.append(f" {label}")
    return text


def spark(values: Sequence[float | None], width: int = 16, maximum: float | None = None) -> Text:
    """The last `width` values as a sparkline (gaps for missing values)."""
    recent = values[-width:]
    if not recent or frozen():  # history length depends on timing: masked in frozen mode
        return Text("·" * width, style="dim")
    known = [v for v in recent if v is not None]
    top = maximum if maximum else (max(known) if known else 0.0)
    pad = " " * (width - len(recent))
    if top <= 0:
        return Text(pad + "".join(" " if v is None else _BLOCKS[0] for v in recent), style="dim")
    scale = (len(_BLOCKS) - 1) / top
    last = len(_BLOCKS) - 1
    # one string, one style: a Text built a cell at a time is the hot spot of a 512-GPU refresh
    return Text(pad + "".join(" " if v is None else _BLOCKS[min(int(v * scale + 0.5), last)] for v in recent),
                style="cyan")


class Banner(Static):
    """Shown across the top while the controller does not answer; hidden otherwise."""

    DEFAULT_CSS = """
    Banner { display: none; background: $error; color: $text; padding: 0 1; height: auto; }
    Banner.-shown { display: block; }
    """

    def show_problem(self, message: str | Text | None) -> None:
        if message:
            self.update(message)
            self.add_class("-shown")
        else:
            self.remove_class("-shown")


class KeyBar(Widget):
    """The footer: the bindings that apply now, as one line; click one to press its key.

    Textual's Footer mounts a widget per binding and rebuilds them all whenever the bindings
    change, which is on every screen switch and focus change (~100 ms on a small machine, most of
    a screen switch). This draws the same hints as one Text and redraws only when they differ.
    """

    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    KeyBar > .key-bar--key { color: $footer-key-foreground; background: $footer-key-background;
                             text-style: bold; }
    KeyBar > .key-bar--description { color: $footer-description-foreground;
                                     background: $footer-description-background; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-bar--key", "key-bar--description"}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._hints: tuple[tuple[str, str, str, bool], ...] = ()  # key, shown as, description, enabled
        self._spans: list[tuple[int, int, str]] = []  # x from, x to, key

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[Any]) -> None:
        if screen is not self.screen:
            return
        hints: list[tuple[str, str, str, bool]] = []
        seen: set[str] = set()
        active = screen.active_bindings
        for _node, binding, enabled, _tooltip in active.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                hints.append((binding.key, self.app.get_key_display(binding), binding.description, enabled))
        palette = active.get(self.app.COMMAND_PALETTE_BINDING) if self.app.ENABLE_COMMAND_PALETTE else None
        if palette is not None:  # hidden from the list above, like Textual's own footer shows it
            hints.append((palette.binding.key, self.app.get_key_display(palette.binding), "palette",
                          palette.enabled))
        if tuple(hints) != self._hints:
            self._hints = tuple(hints)
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        text = Text(no_wrap=True, overflow="crop", end="")
        self._spans = []
        for key, shown, description, enabled in self._hints:
            start = text.cell_len
            dim = Style(dim=not enabled)
            text.append(f" {shown} ", key_style + dim)
            text.append(f"{description} ", description_style + dim)
            self._spans.append((start, text.cell_len, key))
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return

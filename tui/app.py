"""The Textual app: connects to the controller, polls it in a worker, routes keys to screens.

`workbench` (workbench.cli.ui) finds or starts the controller and hands the app its address and
token; the app itself never starts anything. Environment:

- ``WORKBENCH_TUI_INTERVAL``: seconds between polls (default 1; the next poll is scheduled only
  when the last one finished, so polls never overlap).
- ``WORKBENCH_TUI_FROZEN=1``: mask volatile values (ages, timings, ports, ids) for snapshot tests.
- ``NO_COLOR``: honoured by Textual (monochrome).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from workbench.tui import fmt
from workbench.tui.backend import Backend
from workbench.tui.pacing import GarbagePacer
from workbench.tui.screens.api_detail import ApiDetailScreen
from workbench.tui.screens.apis import ApisScreen
from workbench.tui.screens.base import DataScreen
from workbench.tui.screens.fleet import FleetScreen
from workbench.tui.screens.forms import AddHostScreen, ConfirmScreen, DeployScreen, PredictScreen, ScaleScreen
from workbench.tui.screens.help import CommandScreen, HelpScreen
from workbench.tui.screens.logs import LogsScreen
from workbench.tui.state import FleetState, StateTracker, later
from workbench.tui.views import ScreenTables, build_views

from workbench.clients.control import ControllerConfig


class Polled(Message):
    """A poll finished: the new snapshot and the rows made from it (both built in the worker)."""

    def __init__(self, state: FleetState, views: ScreenTables, ok: bool):
        super().__init__()
        self.state = state
        self.views = views
        self.ok = ok


class ActionDone(Message):
    """A worker-side action finished: a toast, and a fresh poll."""

    def __init__(self, text: str, error: bool = False, back: bool = False):
        super().__init__()
        self.text = text
        self.error = error
        self.back = back


class WorkbenchApp(App[None]):
    CSS_PATH = "workbench.tcss"
    TITLE = "workbench"
    MODES = {"fleet": FleetScreen, "apis": ApisScreen}
    DEFAULT_MODE = "fleet"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("colon", "command", "Command", key_display=":"),
        Binding("1", "switch_mode('fleet')", "Hosts"),
        Binding("2", "switch_mode('apis')", "APIs"),
        Binding("escape", "go_back", "Back"),
    ]

    def __init__(self, config: ControllerConfig, origin: str = "attached", *,
                 interval: float | None = None):
        super().__init__()
        self.config = config
        self.origin = origin
        self.backend = Backend(config.url, config.token)
        self.state = FleetState()
        self.views = ScreenTables()
        self._tracker = StateTracker()  # touched by the poll worker only
        self.generation = 0  # polls landed (screens compare it to what they show)
        self._pacer = GarbagePacer()
        self.interval = interval if interval is not None else float(
            os.environ.get("WORKBENCH_TUI_INTERVAL", "1") or 1)
        self._watched: str | None = None
        self._polling = False
        self._again = False
        self._timer: Timer | None = None
        self._where = ""  # the header's "attached to URL" (the fleet's $/h follows it)

    # -- lifecycle --------------------------------------------------------------------------------
    def on_mount(self) -> None:
        where = fmt.url(self.config.url)
        attached = self.origin == "attached"
        self._where = f"attached to {where}" if attached else f"started controller {where}"
        self.sub_title = self._where
        self._pacer.start()
        self._start_poll()

    def on_unmount(self) -> None:
        self._pacer.stop()
        self.backend.close()

    # -- polling: one at a time, the next scheduled when the last finished --------------------------
    def watch_api(self, name: str | None) -> None:
        if name != self._watched:
            self._watched = name
            if name:
                self.poll_now()

    def poll_now(self) -> None:
        if self._polling:
            self._again = True
            return
        if self._timer is not None:
            self._timer.stop()
        self._start_poll()

    def _start_poll(self) -> None:
        self._timer = None
        self._polling = True
        self.run_worker(self._poll, thread=True, group="poll", exit_on_error=False)

    def _poll(self) -> None:
        """Worker thread: fetch, fold into the histories, build every table's rows."""
        tracker = self._tracker
        later.empty()
        try:
            result = self.backend.poll(self._watched, gpu_since=tracker.gpu_since())
        except Exception as error:  # a dead controller must never take the UI down
            self.post_message(Polled(tracker.fail(str(error) or type(error).__name__), self.views, False))
            return
        state = tracker.apply(result)
        self.post_message(Polled(state, build_views(state), True))

    def on_polled(self, message: Polled) -> None:
        self._polling = False
        later.put(self.state, self.views)  # the previous ones: freed by the next poll's worker
        self.state = message.state
        self.views = message.views
        self.generation += 1
        title = " · ".join(part for part in (self._where, self.views.per_hour) if part)
        if self.sub_title != title:
            self.sub_title = title
        self.call_after_refresh(self._pacer.after_paint)
        shown = next((s for s in reversed(self.screen_stack) if isinstance(s, DataScreen)), None)
        if shown is not None and shown.is_mounted:  # screens below catch up when resumed
            shown.refresh_from(self.state)
        if self._again:
            self._again = False
            self._start_poll()
        else:
            delay = self.interval if message.ok else max(self.interval, 2.0)
            self._timer = self.set_timer(delay, self._start_poll)

    # -- navigation ---------------------------------------------------------------------------------
    def action_go_back(self) -> None:
        screen = self.screen
        if isinstance(screen, DataScreen) and screen.clear_filter():
            return
        if len(self.screen_stack) > 1:
            self.pop_screen()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def action_command(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self.run_command(text)

        self.push_screen(CommandScreen(), done)

    def run_command(self, text: str) -> None:
        word, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        if word in ("hosts", "host", "fleet", "nodes", "gpus"):
            self.switch_mode("fleet")
        elif word in ("apis", "api") and not rest:
            self.switch_mode("apis")
        elif word == "api":
            self.open_api(rest)
        elif word in ("logs", "log") and rest:
            self.open_logs(rest)
        elif word == "deploy":
            self.open_deploy(rest)
        elif word == "theme" and rest:
            if rest in self.available_themes:
                self.theme = rest
            else:
                self.notify(f"no theme {rest!r}; try one of {', '.join(sorted(self.available_themes))}",
                            severity="error", markup=False)
        elif word in ("q", "quit"):
            self.exit()
        else:
            self.notify(f"unknown command ':{text}'; try :hosts, :apis, :api NAME, :logs NAME",
                        severity="error", markup=False)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)  # includes "Theme" (switch theme)
        yield SystemCommand("Hosts", "The fleet: hosts and GPUs (:hosts)", lambda: self.switch_mode("fleet"))
        yield SystemCommand("APIs", "Every API (:apis)", lambda: self.switch_mode("apis"))
        yield SystemCommand("Deploy", "Deploy a workbench.yaml", self.open_deploy)
        yield SystemCommand("Add host", "Add an SSH host", self.open_add_host)
        for api in self.state.apis:
            yield SystemCommand(f"Logs {api.name}", f"Follow the log of {api.name}",
                                lambda name=api.name: self.open_logs(name))
            yield SystemCommand(f"Open {api.name}", f"Replicas and events of {api.name}",
                                lambda name=api.name: self.open_api(name))

    def _in_apis_mode(self) -> None:
        if self.current_mode != "apis":
            self.switch_mode("apis")

    def open_api(self, name: str) -> None:
        if self.state.loaded and all(api.name != name for api in self.state.apis):
            known = ", ".join(api.name for api in self.state.apis) or "none"
            self.notify(f"no API named {name!r} (deployed: {known})", severity="error", markup=False)
            return
        self._in_apis_mode()
        self.push_screen(ApiDetailScreen(name))

    def open_logs(self, name: str, replica: str | None = None) -> None:
        if self.state.loaded and all(api.name != name for api in self.state.apis):
            known = ", ".join(api.name for api in self.state.apis) or "none"
            self.notify(f"no API named {name!r} (deployed: {known})", severity="error", markup=False)
            return
        self.push_screen(LogsScreen(name, replica))

    def open_deploy(self, path: str = "") -> None:
        self.push_screen(DeployScreen(path))

    def open_add_host(self) -> None:
        self.push_screen(AddHostScreen())

    def open_predict(self, name: str) -> None:
        self.push_screen(PredictScreen(name))

    def open_scale(self, name: str) -> None:
        summary = next((a for a in self.state.apis if a.name == name), None)

        def done(request: Any) -> None:
            if request is not None:
                self.act(lambda: self.backend.scale(name, request),
                         f"scaled {name}: {request.model_dump(exclude_none=True)}")

        self.push_screen(ScaleScreen(name, summary.replicas.requested if summary else None,
                                     summary.autoscaling if summary else None), done)

    def confirm_then(self, question: str, action: Callable[[], None]) -> None:
        def done(yes: bool | None) -> None:
            if yes:
                action()

        self.push_screen(ConfirmScreen(question), done)

    # -- actions run in workers ------------------------------------------------------------------
    def act(self, call: Callable[[], Any], success: str, back: bool = False) -> None:
        def work() -> None:
            try:
                call()
            except Exception as error:
                self.post_message(ActionDone(f"{success.split(':')[0]} failed: {error}", error=True))
            else:
                self.post_message(ActionDone(success, back=back))

        self.run_worker(work, thread=True, group="action", exit_on_error=False)

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    timeout=8 if message.error else 4, markup=False)
        if message.back and not message.error and isinstance(self.screen, ApiDetailScreen):
            self.pop_screen()
        self.poll_now()

    def delete_api(self, name: str, then_back: bool = False) -> None:
        self.act(lambda: self.backend.delete(name), f"deleted {name}", back=then_back)

    def restart_replica(self, name: str, replica: str) -> None:
        self.act(lambda: self.backend.restart(name, replica), f"restarting {fmt.short_id(replica)}")

    def remove_host(self, name: str) -> None:
        self.act(lambda: self.backend.remove_host(name), f"removed host {name}")

    def upgrade_host(self, name: str) -> None:
        def call() -> None:
            for event in self.backend.upgrade_host(name):
                if event.kind == "error":
                    raise RuntimeError(event.message)
                if event.kind == "step":
                    self.post_message(ActionDone(f"{name}: {event.message}"))

        self.act(call, f"upgraded the agent on {name}")


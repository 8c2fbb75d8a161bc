"""`workbench web`: textual-serve's server with workbench's own start-up banner.

textual-serve prints "Serving '<command>' on <url>", which names the Python interpreter and the
module it runs; workbench's users need the address and what they get there.
"""

from __future__ import annotations

from aiohttp import web
from textual_serve.server import Server


class WebServer(Server):
    """Serves the terminal UI, one copy per browser tab."""

    async def on_startup(self, app: web.Application) -> None:
        self.console.print(f"workbench web UI on {self.public_url} (each browser tab runs its own "
                           "terminal UI against this machine's controller)", highlight=False, markup=False,
                           soft_wrap=True)
        self.console.print("Press Ctrl+C to stop", style="cyan")

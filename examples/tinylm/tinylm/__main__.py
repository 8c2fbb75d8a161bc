"""`python -m tinylm`: serve the model over HTTP (see `--help`; every flag has an environment variable)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from tinylm.server import create_app
from tinylm.settings import SettingsError, parse_settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except SettingsError as error:
        print(f"tinylm: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fatal: list[str] = []

    def stop(message: str) -> None:
        fatal.append(message)
        server.should_exit = True

    config = uvicorn.Config(create_app(settings, on_fatal=stop), host=settings.host, port=settings.port,
                            access_log=settings.access_log, timeout_graceful_shutdown=5,
                            log_config=None)
    server = uvicorn.Server(config)
    logging.getLogger("tinylm").info("serving %r on http://%s:%d", settings.model_name, settings.host,
                                     settings.port)
    server.run()
    return 1 if fatal or not server.started else 0


if __name__ == "__main__":
    raise SystemExit(main())

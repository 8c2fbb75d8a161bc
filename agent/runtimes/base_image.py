"""Pick the base image a build uses: local, pulled, or the bootstrapped fallback.

Runs in the agent, which owns the host's Docker engine and its builds."""

from __future__ import annotations

import threading
from typing import Any

from workbench.wire.errors import Failed
from workbench.wire.replica import BOOTSTRAP_BASE_IMAGE, DEFAULT_BASE_IMAGE

BOOTSTRAP_TAG = BOOTSTRAP_BASE_IMAGE
PULL_TIMEOUT = 60.0


class BaseImageError(Failed):
    """No usable base image; str() says what to do."""


def _exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _pull(client: Any, name: str, timeout: float) -> str | None:
    """Pull `name`; None on success, else the reason. A pull still running at the timeout
    is left to finish in the background."""
    result: list[str | None] = []

    def work() -> None:
        try:
            client.images.pull(name)  # docker-py splits tag/digest itself
            result.append(None)
        except Exception as error:  # docker.errors.APIError, connection errors
            result.append(str(getattr(error, "explanation", None) or error))

    thread = threading.Thread(target=work, name=f"pull {name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"no answer within {timeout:.0f}s"
    return result[0]


def resolve_base_image(client: Any, wanted: str = DEFAULT_BASE_IMAGE, *,
                       pull_timeout: float = PULL_TIMEOUT,
                       bootstrap_tag: str = BOOTSTRAP_TAG,
                       fix: str | None = None) -> tuple[str, str | None]:
    """(image to build FROM, note for the user or None).

    `wanted` if the engine has it or can pull it; for the default python:3.11-slim, the
    bootstrapped image when the pull fails; else BaseImageError saying what to do (`fix`, when
    the default advice does not apply)."""
    if _exists(client, wanted):
        return wanted, None
    reason = _pull(client, wanted, pull_timeout)
    if reason is None:
        return wanted, None
    if wanted == DEFAULT_BASE_IMAGE and _exists(client, bootstrap_tag):
        return bootstrap_tag, (f"cannot pull {wanted} ({reason}); "
                               f"using the bootstrapped base image {bootstrap_tag}")
    raise BaseImageError(
        f"cannot pull {wanted} ({reason}); "
        + (fix or "run `workbench image bootstrap` or set image.base in workbench.yaml to an image "
           "this machine has")
    )

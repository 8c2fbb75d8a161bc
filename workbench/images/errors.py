"""Errors raised while preparing images."""

from __future__ import annotations

from workbench.wire.errors import BadRequest, Failed


class ImageError(Failed):
    """Base class of image-preparation errors; str() is meant for the user."""


class ContextError(ImageError, BadRequest):
    """The spec or project cannot be turned into a build context."""

    default_status = 400


class ContextChanged(ContextError):
    """A planned file changed (or went away) before the context was written: the artifact would
    not be what its hash says."""


class WheelhouseError(ImageError):
    """pip could not resolve the wheels for an offline build."""

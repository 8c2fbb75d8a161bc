"""Errors raised while preparing images."""

from __future__ import annotations


class ImageError(Exception):
    """Base class of image-preparation errors; str() is meant for the user."""


class ContextError(ImageError):
    """The spec or project cannot be turned into a build context."""


class WheelhouseError(ImageError):
    """pip could not resolve the wheels for an offline build."""

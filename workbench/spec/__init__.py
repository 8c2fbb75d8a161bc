"""workbench.yaml: the models of an API spec and the loader that turns errors into file:line."""

from workbench.spec.loader import SpecError, load_specs
from workbench.spec.models import ApiSpec

__all__ = ["ApiSpec", "SpecError", "load_specs"]

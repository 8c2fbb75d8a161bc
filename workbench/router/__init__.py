"""The router (data plane): spreads requests to an API over its ready replicas."""

from .router import Router
from .types import ApiRoute, ApiTraffic, Endpoint, SplitRoute

__all__ = ["ApiRoute", "ApiTraffic", "Endpoint", "Router", "SplitRoute"]

"""The router (data plane): spreads requests to an API over its ready replicas."""

"""The host's model cache: content-addressed files, a manifest per model version, read-only trees
that replicas mount, and the fetcher that fills it from a source the host can reach itself."""

"""The smallest predictor: answers with what it was sent (used by tests and benchmarks)."""


class Predictor:
    def __init__(self, config):
        self.prefix = config.get("prefix")

    async def predict(self, payload, query_params):
        if self.prefix is None and not query_params:
            return payload
        return {"echo": payload, "prefix": self.prefix, "query": dict(query_params)}

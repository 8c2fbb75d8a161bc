# predictor.py
class Predictor:
    def __init__(self, config):          # runs once per replica; load your model here
        self.greeting = config.get("greeting", "hello")

    def predict(self, payload, query_params, headers):   # extra arguments are optional
        return {"message": f"{self.greeting}, {payload['name']}"}

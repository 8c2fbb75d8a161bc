"""Classify an iris flower from its four measurements (in cm)."""

import joblib

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


class Predictor:
    def __init__(self, config):
        saved = joblib.load(config.get("model", "model.joblib"))
        self.model = saved["model"]
        self.labels = saved["labels"]

    def predict(self, payload):
        if isinstance(payload, dict):
            missing = [name for name in FEATURES if name not in payload]
            if missing:
                raise ValueError(f"missing fields: {', '.join(missing)}")
            row = [float(payload[name]) for name in FEATURES]
        elif isinstance(payload, list) and len(payload) == 4:
            row = [float(value) for value in payload]
        else:
            raise ValueError(f"send an object with {', '.join(FEATURES)}, or a list of 4 numbers")
        probabilities = self.model.predict_proba([row])[0]
        best = int(probabilities.argmax())
        return {
            "label": self.labels[best],
            "probabilities": {
                label: round(float(p), 4)
                for label, p in zip(self.labels, probabilities, strict=True)
            },
        }

"""Recognise a handwritten digit from 64 pixel values (an 8x8 image, 0-16 each).

Requests are batched on the server: predict gets a list of payloads and returns a list.
"""

import torch
from network import make_network


class Predictor:
    def __init__(self, config):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.network = make_network()
        self.network.load_state_dict(torch.load(config.get("model", "model.pt"), map_location="cpu"))
        self.network.to(self.device).eval()

    def predict(self, payload):
        rows = []
        for item in payload:
            pixels = item.get("pixels") if isinstance(item, dict) else item
            if not isinstance(pixels, list) or len(pixels) != 64:
                raise ValueError("send {\"pixels\": [64 numbers from 0 to 16]}")
            rows.append([float(value) / 16.0 for value in pixels])
        with torch.no_grad():
            batch = torch.tensor(rows, dtype=torch.float32, device=self.device)
            probabilities = torch.softmax(self.network(batch), dim=1).cpu()
        return [
            {"digit": int(row.argmax()), "confidence": round(float(row.max()), 4), "device": self.device.type}
            for row in probabilities
        ]

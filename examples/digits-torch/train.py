"""Train a small PyTorch network on scikit-learn's bundled 8x8 digits (runs at build time)."""

import torch
from network import make_network
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    network = make_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    loss_function = torch.nn.CrossEntropyLoss()
    for _epoch in range(60):
        optimizer.zero_grad()
        loss = loss_function(network(x_train), y_train)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (network(x_test).argmax(dim=1) == y_test).float().mean().item()
    print(f"digits: test accuracy {accuracy:.3f}")
    torch.save(network.state_dict(), "model.pt")


if __name__ == "__main__":
    main()

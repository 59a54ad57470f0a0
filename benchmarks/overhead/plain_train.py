"""The plain PyTorch script a user would write instead of `parnn train`: the same work.

LeNet-5 (ReLU, max pooling) on the MNIST test set (10,000 images) split 8,000/2,000, one
intra-op thread, SGD (lr 0.05, momentum 0.9), batch 32, shuffled per epoch, 3 epochs, the
loss of every step read back (as any loop that prints it), evaluation on the held-out 2,000
after each epoch. Prints the final validation accuracy.

    python plain_train.py /path/to/mnist [epochs]
"""

import gzip
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def main() -> None:
    data_dir = Path(sys.argv[1])
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    x = (torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 255.0 - 0.1307) / 0.3081
    y = torch.from_numpy(labels.astype(np.int64))
    order = torch.randperm(len(y))
    train_idx, val_idx = order[:8000], order[8000:]
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]

    model = lenet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    accuracy = 0.0
    for _epoch in range(epochs):
        model.train()
        running = 0.0
        for batch in torch.randperm(len(y_train)).split(32):
            optimizer.zero_grad()
            loss = criterion(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            running += loss.item()
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(xb).argmax(1) == yb).sum())
                for xb, yb in zip(x_val.split(256), y_val.split(256), strict=True)
            )
        accuracy = correct / len(y_val)
    print(f"val accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()

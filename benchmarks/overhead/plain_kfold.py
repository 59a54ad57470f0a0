"""The joblib script a user would write instead of `parnn kfold`: the same 20 jobs.

lenet5 and mlp (the zoo's architectures, written out) x LR schedules cosine and warm
(10% linear warm-up) x 5 folds of the MNIST test set (10,000 images), 1 epoch, batch 32,
Adam (lr 0.003), each job a plain function under ``joblib.Parallel(n_jobs=2)`` with one
intra-op thread that reads the data itself, trains on 4 folds and evaluates on the fifth.
No checkpoints, no live view, no plots. Prints the mean accuracy per model and schedule.

    python plain_kfold.py /path/to/mnist [workers]
"""

import gzip
import math
import sys
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def build(name: str):  # noqa: ANN201 - a user's script
    from torch import nn

    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def job(data_dir: str, model_name: str, schedule: str, fold: int, folds: int) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    images = read_idx(Path(data_dir) / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(Path(data_dir) / "t10k-labels-idx1-ubyte.gz")
    x = (torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 255.0 - 0.1307) / 0.3081
    y = torch.from_numpy(labels.astype(np.int64))
    order = np.random.default_rng(0).permutation(len(y))
    parts = np.array_split(order, folds)
    val_idx = torch.from_numpy(np.sort(parts[fold]))
    train_idx = torch.from_numpy(np.sort(np.concatenate(parts[:fold] + parts[fold + 1 :])))

    torch.manual_seed(fold)
    model = build(model_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    total = math.ceil(len(train_idx) / 32)
    warmup = max(1, total // 10)

    def factor(t: int) -> float:
        if schedule == "warm" and t < warmup:
            return (t + 1) / warmup
        start, span = (warmup, total - warmup) if schedule == "warm" else (0, total)
        return 0.5 * (1 + math.cos(math.pi * min(t - start, span) / span))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for batch in train_idx[torch.randperm(len(train_idx))].split(32):
        optimizer.zero_grad()
        loss = criterion(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        predictions = model(x[val_idx]).argmax(1)
    return float((predictions == y[val_idx]).float().mean())


def main() -> None:
    data_dir = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    folds = 5
    grid = [(m, s, f) for m in ("lenet5", "mlp") for s in ("cosine", "warm") for f in range(folds)]
    accuracies = Parallel(n_jobs=workers)(
        delayed(job)(data_dir, m, s, f, folds) for m, s, f in grid
    )
    for m, s in dict.fromkeys((m, s) for m, s, _ in grid):
        values = [a for (gm, gs, _), a in zip(grid, accuracies, strict=True) if (gm, gs) == (m, s)]
        print(f"{m} {s}: {100 * sum(values) / len(values):.2f} %")


if __name__ == "__main__":
    main()

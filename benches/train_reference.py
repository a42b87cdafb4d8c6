#!/usr/bin/env python3
"""The tutorial's PyTorch training loop, timed, for comparison with `lookout train` (host/benches/train.rs).

Same work as the Rust bench: 5 epochs of the tutorial head (flatten → Linear(62720→256) → ReLU →
Dropout(0.5) → Linear(256→1), BCE-with-logits, Adam(amsgrad=True), lr 1e-3, batch 64) on 1600 feature maps of
EfficientNet-Lite0's shape [1280, 7, 7], plus a pass over 400 test maps after each epoch as the tutorial does.
The features are random: the speed of a dense head does not depend on the values.

Skips (exit 0 with a message) where torch is not installed. Usage: python3 benches/train_reference.py
[--epochs 5] [--threads N]
"""
import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError:
        print("SKIPPED: torch is not installed (pip install torch) — no PyTorch reference measured")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    shape = (1280, 7, 7)
    x_train = torch.randn(args.train, *shape)
    y_train = (torch.rand(args.train) < 0.5).float()
    x_test = torch.randn(args.test, *shape)
    y_test = (torch.rand(args.test) < 0.5).float()
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train, y_train), batch_size=64, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_test, y_test), batch_size=64)
    head = nn.Sequential(
        nn.Flatten(), nn.Linear(1280 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1)
    )
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, amsgrad=True)
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        epoch_started = time.perf_counter()
        head.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(head(xb).squeeze(1), yb)
            loss.backward()
            optimizer.step()
        head.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in test_loader:
                correct += ((head(xb).squeeze(1) > 0).float() == yb).sum().item()
        print(f"epoch {epoch}: {time.perf_counter() - epoch_started:.2f} s (accuracy {correct / args.test:.3f})")
    total = time.perf_counter() - started
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: {args.epochs} epochs in {total:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

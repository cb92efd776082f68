"""A minimal spiking network trained with snn, written out by hand (no ``snn train``).

A two-layer LIF network learns scikit-learn's 8x8 digits (bundled, nothing is downloaded) with
back-propagation through time and the TET loss, in a few seconds on a CPU::

    pip install -e "packages/snn-core[demo]"   # from a checkout; scikit-learn for the data
    python examples/train_minimal.py           # add --backend triton / cupy on a GPU

(from a package index: ``pip install "snn-core[demo]"``). It shows the three things every snn
training loop does: build the network from step-mode-aware layers and neurons in multi-step
mode (inputs ``[T, N, *]``), reset the neurons' state before each batch
(``functional.reset_net``), and read the output spikes over time.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from snn import functional, layer, neuron

__all__ = ["build_network", "main"]

T = 8  # time steps each image is shown for


def build_network(hidden: int = 256) -> nn.Module:
    """``[T, N, 64]`` pixel intensities -> ``[T, N, 10]`` output spikes."""
    return nn.Sequential(
        layer.Linear(64, hidden, step_mode="m"),
        neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m"),
        layer.Linear(hidden, 10, step_mode="m"),
        neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m"),
    )


def main() -> None:
    """Train for a few epochs and print the test accuracy after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", help="neuron backend")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    from sklearn.datasets import load_digits  # from the demo extra

    torch.manual_seed(0)
    digits = load_digits()
    # pixel intensities in [0, 1]: [1797, 64]
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y))
    train_idx, test_idx = order[:1440], order[1440:]

    net = build_network()
    functional.set_backend(net, args.backend)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)

    for epoch in range(1, args.epochs + 1):
        net.train()
        for batch in train_idx[torch.randperm(len(train_idx))].split(64):
            # direct coding: the same image at every step, [T, N, 64]
            x_seq = x[batch].unsqueeze(0).repeat(T, 1, 1)
            # neurons keep their potential between calls: start from rest
            functional.reset_net(net)
            out_seq = net(x_seq)  # [T, N, 10] spikes
            loss = functional.temporal_efficient_training_cross_entropy(
                out_seq, y[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        net.eval()
        with torch.no_grad():
            functional.reset_net(net)
            x_seq = x[test_idx].unsqueeze(0).repeat(T, 1, 1)
            rates = net(x_seq).mean(0)  # firing rates [N, 10]
            accuracy = (rates.argmax(1) == y[test_idx]).float().mean().item()
        print(
            f"epoch {epoch:2d}  loss {loss.item():.4f}  "
            f"test accuracy {100 * accuracy:.1f}%"
        )


if __name__ == "__main__":
    main()

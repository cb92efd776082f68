"""The figures ``snn train`` writes: learning curves, a spike raster and firing rates.

matplotlib is imported lazily and drawn through its Agg canvas on bare ``Figure`` objects: no
display is needed and pyplot's global state (its backend, open figures) is left alone. It comes
with ``pip install "snn-core[demo]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from snn.train.extras import import_demo_module

__all__ = ["PLOT_FILES", "plot_learning_curves", "plot_spike_raster", "plot_firing_rates", "write_plots"]

#: The PNG files :func:`write_plots` creates, by what they show.
PLOT_FILES = {
    "learning_curves": "learning_curves.png",
    "spike_raster": "spike_raster.png",
    "firing_rates": "firing_rates.png",
}


def _figure(**kwargs: Any) -> Any:
    figure_module = import_demo_module("matplotlib.figure")
    backend_agg = import_demo_module("matplotlib.backends.backend_agg")
    fig = figure_module.Figure(**kwargs)
    backend_agg.FigureCanvasAgg(fig)
    return fig


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Loss and accuracies per epoch, side by side.

    Args:
        history: one mapping per epoch with ``epoch``, ``train_loss``, ``train_accuracy`` and
            ``test_accuracy``.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    epochs = [r["epoch"] for r in history]
    fig = _figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", ms=3, label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], marker="o", ms=3, label="train")
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], marker="s", ms=3, label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ticker = import_demo_module("matplotlib.ticker")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_spike_raster(spikes: Mapping[str, torch.Tensor], label: int, path: Path, max_neurons: int = 256) -> Path:
    """One raster per neuron layer: which neuron fired at which step, for one input.

    Args:
        spikes: ``layer name -> [T, neurons]`` spikes (0/1) of one sample, in forward order.
        label: the sample's class, for the title.
        path: the PNG to write.
        max_neurons: show at most this many neurons per layer (the first ones).

    Returns:
        ``path``.
    """
    names = list(spikes)
    fig = _figure(figsize=(7, 1.2 + 1.8 * max(len(names), 1)))
    axes = fig.subplots(max(len(names), 1), 1, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        seq = spikes[name][:, :max_neurons]
        steps, neurons = torch.nonzero(seq > 0, as_tuple=True)
        ax.scatter(steps.numpy(), neurons.numpy(), s=6, marker="|", color="black")
        ax.set_xlim(-0.5, seq.shape[0] - 0.5)
        ax.set_ylim(-0.5, seq.shape[1] - 0.5)
        shown = f"first {seq.shape[1]} of {spikes[name].shape[1]}" if spikes[name].shape[1] > seq.shape[1] else str(seq.shape[1])
        ax.set_title(f"{name}: {shown} neurons, rate {float(spikes[name].mean()):.3f}", fontsize=9)
        ax.set_ylabel("neuron")
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(f"spike raster of one test sample (label {label})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_firing_rates(rates: Mapping[str, float], path: Path) -> Path:
    """Mean firing rate (spikes per neuron and step) of each neuron layer over the test set.

    Args:
        rates: ``layer name -> rate`` in forward order.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    names = list(rates)
    fig = _figure(figsize=(max(4.0, 1.2 * len(names) + 2), 3.2))
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), [rates[n] for n in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("spikes / neuron / step")
    ax.set_ylim(0, max([1e-3, *rates.values()]) * 1.25)
    ax.set_title("firing rate per layer (test set)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_plots(
    out_dir: Path,
    history: Sequence[Mapping[str, float]],
    spikes: Mapping[str, torch.Tensor],
    label: int,
    rates: Mapping[str, float],
) -> dict[str, str]:
    """Write every figure into ``out_dir``.

    Returns:
        ``figure -> file name`` (the keys of :data:`PLOT_FILES`).

    Raises:
        snn.train.extras.DemoDependencyError: matplotlib is missing.
    """
    plot_learning_curves(history, out_dir / PLOT_FILES["learning_curves"])
    plot_spike_raster(spikes, label, out_dir / PLOT_FILES["spike_raster"])
    plot_firing_rates(rates, out_dir / PLOT_FILES["firing_rates"])
    return dict(PLOT_FILES)

"""The networks ``snn train`` builds, and spike recording for the plots.

Two architectures, both made of snn's step-mode-aware layers and spiking neurons:

- ``mlp``: ``Flatten -> Linear(64, hidden) -> neuron -> Linear(hidden, 10) -> neuron``;
- ``conv``: two blocks ``Conv2d(3x3) [-> BatchNorm2d] -> neuron -> MaxPool2d(2)`` (8x8 -> 4x4
  -> 2x2) followed by ``Flatten -> Linear -> neuron``.

The output layer spikes too; the class scores are the output spikes over time ``[T, N, 10]``.
BPTT trains the network in multi-step mode (``step_mode='m'``, fused kernels per layer); an
online learner gets the same layers in single-step mode with its own neurons
(``learner.make_neuron``) assembled by ``learner.wrap_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from snn.train.data import IMAGE_SHAPE, NUM_CLASSES

__all__ = [
    "MODELS",
    "NeuronFactory",
    "build_layers",
    "default_neuron_factory",
    "spiking_layers",
    "record_spikes",
]

#: The architectures ``snn train --model`` accepts.
MODELS = ("mlp", "conv")

#: Makes one spiking-neuron module (no arguments).
NeuronFactory = Callable[[], nn.Module]

#: LIF parameters shared by every architecture (membrane time constant 2 steps, hard reset).
LIF_KWARGS: dict[str, Any] = {"tau": 2.0}


def default_neuron_factory(step_mode: str) -> NeuronFactory:
    """LIF neurons (``tau=2``, hard reset to 0, reset detached) in ``step_mode``.

    Args:
        step_mode: ``'m'`` for BPTT over whole sequences, ``'s'`` for one step at a time.

    Returns:
        A zero-argument factory of :class:`snn.neuron.LIFNode`.
    """
    from snn.neuron import LIFNode

    def make() -> nn.Module:
        return LIFNode(detach_reset=True, step_mode=step_mode, **LIF_KWARGS)

    return make


def build_layers(
    model: str,
    step_mode: str,
    neuron: NeuronFactory,
    *,
    hidden: int = 256,
    channels: int = 16,
    batch_norm: bool = True,
) -> list[nn.Module]:
    """The layers of ``model`` in order (assemble them with ``nn.Sequential`` or a learner).

    Args:
        model: ``"mlp"`` or ``"conv"``.
        step_mode: step mode of the stateless layers, ``'m'`` (inputs ``[T, N, 1, 8, 8]``)
            or ``'s'`` (inputs ``[N, 1, 8, 8]``).
        neuron: makes each spiking-neuron layer (already in the right step mode).
        hidden: width of the MLP's hidden layer.
        channels: channels of the first conv block (the second has twice as many).
        batch_norm: put a BatchNorm2d after each convolution (conv only).

    Returns:
        The list of modules; the last one is a neuron layer with 10 outputs.

    Raises:
        ValueError: unknown ``model`` or a non-positive width.
    """
    from snn import layer

    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if hidden < 1 or channels < 1:
        raise ValueError(f"hidden / channels: expected positive integers, got {hidden!r} / {channels!r}")
    c, h, w = IMAGE_SHAPE
    if model == "mlp":
        return [
            layer.Flatten(step_mode=step_mode),
            layer.Linear(c * h * w, hidden, step_mode=step_mode),
            neuron(),
            layer.Linear(hidden, NUM_CLASSES, step_mode=step_mode),
            neuron(),
        ]
    layers: list[nn.Module] = []
    in_channels = c
    for out_channels in (channels, 2 * channels):
        layers.append(layer.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm, step_mode=step_mode))
        if batch_norm:
            layers.append(layer.BatchNorm2d(out_channels, step_mode=step_mode))
        layers.append(neuron())
        layers.append(layer.MaxPool2d(2, step_mode=step_mode))
        in_channels = out_channels
    layers += [
        layer.Flatten(step_mode=step_mode),
        layer.Linear(in_channels * (h // 4) * (w // 4), NUM_CLASSES, step_mode=step_mode),
        neuron(),
    ]
    return layers


def spiking_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(label, module)`` of every spiking-neuron layer of ``model``, in forward order.

    A neuron layer is a :class:`snn.neuron.BaseNode` (IF, LIF, PLIF, every other neuron and
    the neurons derived from them, online-learning neurons included). The label is the class name
    and the module's name in ``model``, e.g. ``"LIFNode[2]"``.
    """
    from snn.neuron import BaseNode

    for name, module in model.named_modules():
        if isinstance(module, BaseNode):
            yield f"{type(module).__name__}[{name}]", module


def _spikes_of(output: Any) -> torch.Tensor:
    # Online-learning neurons return [spike, trace] while training.
    return output[0] if isinstance(output, (list, tuple)) else output


@torch.no_grad()
def record_spikes(model: nn.Module, x_seq: torch.Tensor, step_mode: str) -> dict[str, torch.Tensor]:
    """Run ``model`` on one sequence and keep the spikes of every neuron layer.

    The model is reset before and after, and run in eval mode (its mode is restored).

    Args:
        model: the trained network.
        x_seq: ``[T, N, *]`` input sequence.
        step_mode: ``'m'`` to feed the whole sequence at once, ``'s'`` to feed it step by step.

    Returns:
        ``layer name -> [T, N, neurons]`` float spikes on the CPU (neurons flattened), in
        forward order.
    """
    from snn import functional

    recorded: dict[str, list[torch.Tensor]] = {}
    handles = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            recorded.setdefault(name, []).append(_spikes_of(output).detach().float().cpu())

        return hook

    for name, module in spiking_layers(model):
        handles.append(module.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    functional.reset_net(model)
    try:
        if step_mode == "m":
            model(x_seq)
        else:
            for x_t in x_seq:
                model(x_t)
    finally:
        for handle in handles:
            handle.remove()
        functional.reset_net(model)
        model.train(was_training)
    spikes: dict[str, torch.Tensor] = {}
    for name, parts in recorded.items():
        seq = torch.cat(parts, 0) if step_mode == "m" else torch.stack(parts, 0)
        spikes[name] = seq.reshape(seq.shape[0], seq.shape[1], -1)
    return spikes

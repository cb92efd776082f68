"""Miscellaneous helpers: threshold margins, redundant one-hot codes, first spikes, init, delays."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snn.errors import UnsupportedOperationError

__all__ = [
    "delay",
    "first_spike_index",
    "kaiming_normal_conv_linear_weight",
    "redundant_one_hot",
    "set_threshold_margin",
]


def _require_tensor(value: Any, function: str, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{function}: {name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def _require_data(value: torch.Tensor, function: str, name: str, why: str) -> None:
    """Raise :class:`UnsupportedOperationError` if ``value`` is a meta tensor (it has no values).

    Args:
        value: the tensor whose values are about to be read.
        function: the public function, for the message.
        name: the argument ``value`` came in.
        why: what the values are read for, e.g. ``"to check the class indices"``.
    """
    if value.device.type == "meta":
        raise UnsupportedOperationError(
            "torch",
            f"{function}: {name}: a tensor on device 'meta' (it has no values, which {function} reads "
            f"{why}); pass a tensor with data (cpu, cuda, ...)",
        )


def _require_int(value: Any, function: str, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{function}: {name}: expected an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{function}: {name}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{function}: {name}: expected an integer >= {minimum}, got {number}")
    return number


def _require_real(value: Any, function: str, name: str) -> float:
    """``value`` as a float: a real number (Python, NumPy) or a one-element real tensor."""
    is_scalar_tensor = (
        isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    )
    if not is_scalar_tensor and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(
            f"{function}: {name}: expected a real number or a one-element tensor, got {value!r} "
            f"({type(value).__name__})"
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{function}: {name}: expected a finite number, got {value!r}")
    return number


def set_threshold_margin(
    output_layer: nn.Module,
    label_one_hot: torch.Tensor,
    eval_threshold: float = 1.0,
    threshold0: float = 0.9,
    threshold1: float = 1.1,
) -> None:
    """Give the output neurons a per-sample threshold margin while training.

    In training mode the threshold becomes a ``[B, C]`` tensor: ``threshold1`` where
    ``label_one_hot == 1`` (the neuron of the true class must fire more strongly) and
    ``threshold0`` elsewhere. In evaluation mode it is ``eval_threshold``. Tensor thresholds are
    served by the torch backend only; the neuron compares and resets in its input's dtype (a
    float32 threshold does not turn float16 spikes and states into float32).

    Args:
        output_layer: the output spiking neuron layer (has ``v_threshold``).
        label_one_hot: ``[B, C]`` one-hot (or multi-hot) labels, values 0 and 1 in any numeric
            dtype, or bool (``[B, C, *]`` for an output layer with more dimensions); in training
            mode class indices ``[B]`` are refused (turn them into one-hot codes with
            ``torch.nn.functional.one_hot(labels, C)``); evaluation mode does not read them.
        eval_threshold: the threshold in evaluation mode.
        threshold0: the training threshold of the other classes.
        threshold1: the training threshold of the true class.

    Raises:
        TypeError: ``output_layer`` has no ``v_threshold``, ``label_one_hot`` is not a tensor
            or is complex, or a threshold is not a real number (Python or NumPy) or a
            one-element tensor.
        ValueError: in training mode, ``label_one_hot`` has fewer than 2 dimensions (the
            reference silently turns 1-D class indices into per-class thresholds shared by every
            sample) or holds a value other than 0 and 1 (checking costs one pass over the labels and, on a
            GPU, one synchronisation; bool labels skip it); a threshold is NaN or infinite (as
            the neurons' own ``v_threshold``).
        snn.errors.UnsupportedOperationError: in training mode, ``label_one_hot`` is a meta
            tensor (its values are read).
    """
    fn = "set_threshold_margin"
    if not isinstance(output_layer, nn.Module) or not hasattr(output_layer, "v_threshold"):
        raise TypeError(
            f"{fn}: output_layer: expected a neuron module with a v_threshold attribute, "
            f"got {type(output_layer).__name__}"
        )
    _require_tensor(label_one_hot, fn, "label_one_hot")
    if label_one_hot.is_complex():
        raise TypeError(f"{fn}: label_one_hot: expected a real or bool dtype, got {label_one_hot.dtype}")
    eval_threshold = _require_real(eval_threshold, fn, "eval_threshold")
    threshold0 = _require_real(threshold0, fn, "threshold0")
    threshold1 = _require_real(threshold1, fn, "threshold1")
    if output_layer.training:
        if label_one_hot.dim() < 2:
            hint = (
                "; for class indices pass torch.nn.functional.one_hot(labels, num_classes)"
                if label_one_hot.dim() == 1 and not label_one_hot.is_floating_point()
                else ""
            )
            raise ValueError(
                f"{fn}: label_one_hot: expected one-hot labels of shape [B, C, *] (at least 2-D), got shape "
                f"{tuple(label_one_hot.shape)}{hint}"
            )
        if label_one_hot.dtype != torch.bool and label_one_hot.numel() > 0:
            _require_data(label_one_hot, fn, "label_one_hot", "to check that it is one-hot")
            with torch.no_grad():
                other = (label_one_hot != 0) & (label_one_hot != 1)
                if bool(other.any()):
                    index = tuple(int(i) for i in other.nonzero()[0])
                    raise ValueError(
                        f"{fn}: label_one_hot: expected one-hot labels [B, C] (values 0 and 1), got "
                        f"{label_one_hot[index].item()!r} at index {list(index)}"
                    )
        dtype = label_one_hot.dtype if label_one_hot.is_floating_point() else torch.get_default_dtype()
        threshold = torch.full(label_one_hot.shape, threshold0, dtype=dtype, device=label_one_hot.device)
        threshold[label_one_hot == 1] = threshold1
        output_layer.v_threshold = threshold
    else:
        # nn.Module.__setattr__ is typed for tensors and modules; v_threshold is a plain float here
        neuron: Any = output_layer
        neuron.v_threshold = eval_threshold


def redundant_one_hot(labels: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """One-hot codes with ``n`` output neurons per class.

    Class ``k`` sets columns ``k*n`` to ``k*n + n - 1``; e.g. ``labels=[0, 2]``,
    ``num_classes=3``, ``n=2`` gives ``[[1,1,0,0,0,0], [0,0,0,0,1,1]]``.

    Args:
        labels: ``[*]`` integer class indices in ``[0, num_classes)``.
        num_classes: number of classes ``C >= 1``.
        n: neurons per class ``>= 0``.

    Returns:
        ``[*, C * n]`` tensor of the default floating dtype, on the device of ``labels``.

    Raises:
        TypeError: ``labels`` is not an integer tensor, or ``num_classes``/``n`` not integers.
        ValueError: ``num_classes < 1``, ``n < 0`` or a label outside ``[0, num_classes)``.
        snn.errors.UnsupportedOperationError: ``labels`` is a non-empty meta tensor (its values
            are read to check the range).
    """
    fn = "redundant_one_hot"
    _require_tensor(labels, fn, "labels")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{fn}: labels: expected an integer tensor of class indices, got dtype {labels.dtype}"
        )
    num_classes = _require_int(num_classes, fn, "num_classes", 1)
    n = _require_int(n, fn, "n", 0)
    if labels.numel() > 0:
        _require_data(labels, fn, "labels", f"to check that they lie in [0, {num_classes})")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"{fn}: labels: expected values in [0, {num_classes}), got {bad}")
    codes = F.one_hot(labels.long(), num_classes).repeat_interleave(n, dim=-1)
    return codes.to(torch.get_default_dtype())


def first_spike_index(spikes: torch.Tensor) -> torch.Tensor:
    """Where each neuron fires for the first time (time on the **last** dimension).

    Args:
        spikes: ``[*, T]`` binary spikes: 0 and 1 in any numeric dtype, or bool.

    Returns:
        Bool tensor of the same shape, True exactly at the first 1 of each row (all False for
        silent rows).

    Raises:
        TypeError: ``spikes`` is not a tensor.
        ValueError: ``spikes`` is 0-dim, or holds a value other than 0 and 1 (the reference
            then silently answers ``(spikes != 0) & (cumsum(spikes) == 1)``, which is not the
            first nonzero step: ``[0.5, 0.5]`` gives ``[False, True]``). Checking costs one
            extra pass over ``spikes`` and, on a GPU, one synchronisation; bool tensors skip it.
        snn.errors.UnsupportedOperationError: ``spikes`` is a non-empty meta tensor of a
            non-bool dtype (its values are read for that check; bool meta tensors work).
    """
    fn = "first_spike_index"
    _require_tensor(spikes, fn, "spikes")
    if spikes.dim() == 0:
        raise ValueError(f"{fn}: spikes: expected a tensor [*, T] with time last, got a 0-dim tensor")
    with torch.no_grad():
        if spikes.dtype != torch.bool:
            if spikes.is_complex():
                raise TypeError(f"{fn}: spikes: expected binary spikes of a real or bool dtype, got {spikes.dtype}")
            if spikes.numel() > 0:
                _require_data(spikes, fn, "spikes", "to check that they are 0 or 1")
            other = (spikes != 0) & (spikes != 1)
            if spikes.numel() > 0 and bool(other.any()):
                index = tuple(int(i) for i in other.nonzero()[0])
                raise ValueError(
                    f"{fn}: spikes: expected binary spikes (0 or 1), got {spikes[index].item()!r} "
                    f"at index {list(index)}"
                )
        return (spikes != 0) & (spikes.cumsum(dim=-1) == 1)


def kaiming_normal_conv_linear_weight(net: nn.Module) -> None:
    """Kaiming-normal initialisation of every ``Conv1d/2d/3d`` and ``Linear`` weight in ``net``.

    ``W ~ N(0, 1 / (3 * fan_in))`` (``kaiming_normal_`` with ``a = sqrt(5)``); biases are not
    touched; transposed convolutions are skipped. Uses the global RNG in module order.

    Args:
        net: the network.

    Raises:
        TypeError: ``net`` is not a :class:`torch.nn.Module`.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"kaiming_normal_conv_linear_weight: net: expected a torch.nn.Module, got {type(net).__name__}"
        )
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, a=math.sqrt(5))


def delay(x_seq: torch.Tensor, delay_steps: int) -> torch.Tensor:
    """Delay a sequence by ``delay_steps`` steps: ``y[t] = x[t - d]``, zeros for ``t < d``.

    Args:
        x_seq: ``[T, *]`` sequence, time first.
        delay_steps: ``d >= 0``. ``d == 0`` returns ``x_seq`` itself; ``d >= T`` returns zeros
            (not connected to ``x_seq``'s graph).

    Returns:
        ``[T, *]`` tensor, dtype and device of ``x_seq``.

    Raises:
        TypeError: ``x_seq`` is not a tensor or ``delay_steps`` not an integer.
        ValueError: ``x_seq`` is 0-dim or ``delay_steps`` is negative.
    """
    fn = "delay"
    _require_tensor(x_seq, fn, "x_seq")
    if x_seq.dim() == 0:
        raise ValueError(f"{fn}: x_seq: expected a sequence [T, *] with time first, got a 0-dim tensor")
    steps = _require_int(delay_steps, fn, "delay_steps", 0)
    if steps == 0:
        return x_seq
    if steps >= x_seq.shape[0]:
        return torch.zeros_like(x_seq)
    return torch.cat((torch.zeros_like(x_seq[:steps]), x_seq[:-steps]), dim=0)

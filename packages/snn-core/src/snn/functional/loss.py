"""Losses for spiking networks: kernel similarities, spike-pattern similarity and TET."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from snn.functional.misc import _require_data

__all__ = [
    "kernel_dot_product",
    "spike_similar_loss",
    "temporal_efficient_training_cross_entropy",
]

#: Kernels of :func:`kernel_dot_product` and the extra positional arguments each needs.
KERNELS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "polynomial": ("d",),
    "sigmoid": ("alpha",),
    "gaussian": ("sigma",),
}

#: Losses of :func:`spike_similar_loss`.
SIMILARITY_LOSSES = ("mse", "l1", "bce")


def _require_tensor(value: Any, function: str, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{function}: {name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def _require_number(value: Any, function: str, name: str) -> Any:
    """``value`` if it is a real number (Python, NumPy) or a one-element real (non-bool) tensor."""
    if (
        isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex()
        and value.dtype != torch.bool
    ):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{function}: {name}: expected a real number or a one-element tensor, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _value_of(value: Any, function: str, name: str) -> float:
    """The value of a parameter accepted by :func:`_require_number`, as a float, to validate it.

    A tensor's value is read (one synchronisation on a GPU); a meta tensor, which has none,
    raises :class:`~snn.errors.UnsupportedOperationError`.
    """
    if isinstance(value, torch.Tensor):
        _require_data(value, function, name, "to check it")
        return float(value.detach().item())
    return float(value)


def kernel_dot_product(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", *args: Any) -> torch.Tensor:
    """Kernel matrix ``K[i, j] = kappa(x[i], y[j])`` between the rows of ``x`` and ``y``.

    Kernels (extra positional arguments in ``args``):

    - ``'linear'``: ``x[i] . y[j]``;
    - ``'polynomial'`` (``d``): ``(x[i] . y[j]) ** d``;
    - ``'sigmoid'`` (``alpha``): ``sigmoid(alpha * x[i] . y[j])``;
    - ``'gaussian'`` (``sigma > 0``): ``exp(-||x[i] - y[j]||^2 / (2 sigma^2))``; needs as many
      rows in ``y`` as in ``x``. Distances come from :func:`torch.cdist` (never negative), so
      values never exceed 1.

    Args:
        x: ``[N, M]`` floating or integer tensor.
        y: ``[N', M]`` tensor, same dtype and device as ``x``.
        kernel: one of ``'linear'``, ``'polynomial'``, ``'sigmoid'``, ``'gaussian'``.
        *args: the kernel's parameter (see above); further arguments are ignored, as the
            reference ignores them.

    Returns:
        ``[N, N']`` tensor; differentiable. Its dtype is what torch's arithmetic gives: that of
        ``x`` for floating inputs; for integer inputs (summed in int64, so that small integer
        types do not wrap around) int64 with ``'linear'`` and an integer ``d``, the default
        floating dtype otherwise.

    Raises:
        TypeError: non-tensor inputs, bool or complex dtypes, a kernel parameter that is not a
            real number (Python or NumPy) or a one-element real tensor, or a missing one.
        ValueError: wrong ranks or feature sizes, unknown ``kernel``, ``sigma <= 0`` (or NaN),
            a negative integral ``d`` with integer inputs, or (gaussian) different row counts.
            A one-element tensor parameter is checked on its value, exactly as a number (its
            value is read: one synchronisation on a GPU).
        snn.errors.UnsupportedOperationError: ``sigma``, or ``d`` with integer inputs, is a
            meta tensor (its value must be read to check it).
    """
    fn = "kernel_dot_product"
    _require_tensor(x, fn, "x")
    _require_tensor(y, fn, "y")
    for name, t in (("x", x), ("y", y)):
        if t.dim() != 2:
            raise ValueError(f"{fn}: {name}: expected a 2-D tensor [N, M], got shape {tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{fn}: {name}: expected a floating or integer dtype, got {t.dtype}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{fn}: y: expected {x.shape[1]} features per row (like x), got shape {tuple(y.shape)}"
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise TypeError(
            f"{fn}: y: expected dtype {x.dtype} on {x.device} (like x), got {y.dtype} on {y.device}"
        )
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"{fn}: kernel: expected one of {sorted(KERNELS)}, got {kernel!r}")
    needed = KERNELS[kernel]
    if len(args) < len(needed):
        raise TypeError(
            f"{fn}: kernel={kernel!r} needs the extra positional argument {needed[0]!r}, got none"
        )

    if not x.is_floating_point():
        # integer products are summed in int64 (as torch sums integers elsewhere): a uint8 or
        # int8 matrix product would wrap around silently
        x, y = x.long(), y.long()
    if kernel == "linear":
        return x @ y.T
    if kernel == "polynomial":
        d = _require_number(args[0], fn, "d")
        if not x.is_floating_point():
            # torch raises for an integer base and a negative integer exponent given as a number,
            # but silently gives 0 (or 1) for one given as a tensor: both are refused
            d_value = _value_of(d, fn, "d")
            if d_value < 0 and d_value.is_integer():
                raise ValueError(
                    f"{fn}: d: integer inputs take no negative integer power, got {d!r} (use floating inputs)"
                )
        return (x @ y.T) ** d
    if kernel == "sigmoid":
        alpha = _require_number(args[0], fn, "alpha")
        return torch.sigmoid(alpha * (x @ y.T))
    sigma = _require_number(args[0], fn, "sigma")
    if not _value_of(sigma, fn, "sigma") > 0:  # NaN fails too
        raise ValueError(f"{fn}: sigma: expected a positive number, got {args[0]!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{fn}: y: kernel='gaussian' expects as many rows as x ({x.shape[0]}), got {y.shape[0]}"
        )
    # torch.cdist: direct differences for small inputs, the matrix-product expansion (clamped at
    # 0, exact for binary spikes) for large ones. Half types are measured in float32 (the CPU
    # has no half cdist) and the kernel cast back; integer inputs in the default floating
    # dtype, which the kernel keeps (as exp of an integer distance gives).
    if not x.is_floating_point():
        x, y = x.to(torch.get_default_dtype()), y.to(torch.get_default_dtype())
    wide = x.dtype in (torch.float16, torch.bfloat16)
    distance = (torch.cdist(x.float(), y.float(), p=2.0) if wide else torch.cdist(x, y, p=2.0)).square()
    return torch.exp(distance / (-2.0 * sigma * sigma)).to(x.dtype)


def spike_similar_loss(
    spikes: torch.Tensor,
    labels: torch.Tensor,
    kernel_type: str = "linear",
    loss_type: str = "mse",
    *args: Any,
) -> torch.Tensor:
    """Make the similarity of spike patterns follow the similarity of labels.

    The spikes of each sample are flattened to a vector; their pairwise similarity matrix
    (:func:`kernel_dot_product`; for ``'linear'`` normalized to the cosine similarity, clamped to
    ``[-1, 1]``) is pulled towards the label similarity: 1 for two samples sharing a label, else 0.

    Args:
        spikes: ``[N, *]`` floating tensor (e.g. ``[N, M, T]`` output spikes).
        labels: ``[N, C]`` one-hot or multi-hot labels (any numeric or bool dtype).
        kernel_type: a kernel of :func:`kernel_dot_product`.
        loss_type: ``'mse'``, ``'l1'`` or ``'bce'`` (mean-reduced; ``'bce'`` needs
            similarities in ``[0, 1]``).
        *args: the kernel's parameter.

    Returns:
        0-dim tensor: float64 for float64 ``spikes``, else float32 (the labels are taken as
        float32, as the reference's ``labels.float()``; for float16 and bfloat16 spikes the
        similarities are computed in float32 too, where the reference gives NaN for a sample
        without spikes or with 65505 spikes or more).

    Raises:
        TypeError: non-tensor inputs or non-floating ``spikes``.
        ValueError: wrong shapes, unknown ``kernel_type`` or ``loss_type``; ``'bce'`` with
            similarities outside ``[0, 1]`` (the reference fails inside
            ``binary_cross_entropy``).
        snn.errors.UnsupportedOperationError: ``'bce'`` with a ``'linear'`` or ``'polynomial'``
            kernel on meta ``spikes`` (the similarities are read for that check), or a meta
            tensor kernel parameter that :func:`kernel_dot_product` reads.
    """
    fn = "spike_similar_loss"
    _require_tensor(spikes, fn, "spikes")
    _require_tensor(labels, fn, "labels")
    if spikes.dim() < 2:
        raise ValueError(
            f"{fn}: spikes: expected a tensor [N, *] with at least 2 dims, got shape {tuple(spikes.shape)}"
        )
    if not spikes.is_floating_point():
        raise TypeError(f"{fn}: spikes: expected a floating dtype, got {spikes.dtype}")
    if labels.dim() != 2 or labels.shape[0] != spikes.shape[0]:
        raise ValueError(
            f"{fn}: labels: expected shape [{spikes.shape[0]}, C] (one row per sample of spikes), "
            f"got {tuple(labels.shape)}"
        )
    if not isinstance(loss_type, str) or loss_type not in SIMILARITY_LOSSES:
        raise ValueError(f"{fn}: loss_type: expected one of {list(SIMILARITY_LOSSES)}, got {loss_type!r}")

    flat = spikes.flatten(start_dim=1)
    if flat.dtype in (torch.float16, torch.bfloat16):
        # in float32: in float16 the 1e-8 below rounds to 0 (a silent sample gives 0 / 0) and
        # 65505 spikes in a sample overflow x . x (inf / inf); both NaN in the reference
        flat = flat.float()
    similarity = kernel_dot_product(flat, flat, kernel_type, *args)
    if kernel_type == "linear":
        norms = flat.norm(p=2, dim=1, keepdim=True)
        similarity = (similarity / (norms @ norms.T + 1e-8)).clamp(-1.0, 1.0)
    # the reference casts the labels with .float(): half-precision spikes give a float32 loss
    dtype = torch.promote_types(similarity.dtype, torch.float32)
    similarity = similarity.to(dtype)
    labels_f = labels.to(device=similarity.device, dtype=dtype)
    target = (labels_f @ labels_f.T).clamp_max(1.0)
    if loss_type == "mse":
        return F.mse_loss(similarity, target)
    if loss_type == "l1":
        return F.l1_loss(similarity, target)
    if kernel_type in ("linear", "polynomial"):  # the others stay in [0, 1]; this check syncs
        _check_unit_interval(similarity, fn, kernel_type)
    return F.binary_cross_entropy(similarity, target)


def _check_unit_interval(similarity: torch.Tensor, fn: str, kernel_type: str) -> None:
    """Raise ``ValueError`` unless every similarity is in ``[0, 1]`` (what ``'bce'`` reads)."""
    if similarity.numel() == 0:
        return
    _require_data(similarity, fn, "spikes", "to check that loss_type='bce' gets similarities in [0, 1]")
    low, high = float(similarity.detach().min()), float(similarity.detach().max())
    if not (low >= 0.0 and high <= 1.0):  # NaN fails too
        raise ValueError(
            f"{fn}: loss_type: 'bce' needs similarities in [0, 1], but kernel_type={kernel_type!r} gave "
            f"values in [{low:g}, {high:g}]; use 'mse' or 'l1', or a kernel bounded in [0, 1] "
            "('sigmoid', 'gaussian'; 'linear' with non-negative spikes)"
        )


def _layout_hint(x_seq: torch.Tensor, target: torch.Tensor) -> str:
    """How to move time to the front when ``x_seq`` looks batch-first or time-last."""
    if target.dim() != 1 or x_seq.dim() != 3:
        return ""
    if x_seq.shape[0] == target.shape[0]:  # [N, C, T] (time last) or [N, T, C] (batch first)
        return (
            "; x_seq looks batch-first: pass x_seq.permute(2, 0, 1) if it is [N, C, T] (time "
            "last) or x_seq.transpose(0, 1) if it is [N, T, C]"
        )
    return ""


def temporal_efficient_training_cross_entropy(x_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TET loss (Deng et al., ICLR 2022): the cross-entropy of every time step, averaged over time.

    ``mean_t CE(x_seq[t], target)``; the paper's optional MSE regulariser is not included.

    Args:
        x_seq: ``[T, N, C, *d]`` floating logits, **time first**, ``T >= 1``.
        target: ``[N, *d]`` integer class indices in ``[0, C)``.

    Returns:
        0-dim tensor in the dtype of ``x_seq``; differentiable.

    Raises:
        TypeError: non-tensor inputs, non-floating logits, non-integer targets or a target on
            another device.
        ValueError: ``x_seq`` with fewer than 3 dims, ``T == 0``, a target shape that does
            not match ``x_seq`` (the message says which layout was expected, and when
            ``x_seq`` looks batch-first or time-last, how to move time to the front), or a
            class index outside ``[0, C)``. Checking the indices costs one min / max
            reduction of ``target`` and, on a GPU, one synchronisation; the reference leaves
            it to torch, whose error on a GPU is an unrecoverable device-side assert (and
            which silently ignores the index -100).
        snn.errors.UnsupportedOperationError: ``target`` is a non-empty meta tensor (its values
            are read for that check).
    """
    fn = "temporal_efficient_training_cross_entropy"
    _require_tensor(x_seq, fn, "x_seq")
    _require_tensor(target, fn, "target")
    if x_seq.dim() < 3:
        raise ValueError(
            f"{fn}: x_seq: expected logits [T, N, C, *] with at least 3 dims, got shape {tuple(x_seq.shape)}"
        )
    if not x_seq.is_floating_point():
        raise TypeError(f"{fn}: x_seq: expected a floating dtype, got {x_seq.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target: expected integer class indices, got dtype {target.dtype}")
    if target.device != x_seq.device:
        raise TypeError(f"{fn}: target: expected a tensor on {x_seq.device} like x_seq, got one on {target.device}")
    steps = x_seq.shape[0]
    if steps == 0:
        raise ValueError(f"{fn}: x_seq: expected at least one time step, got shape {tuple(x_seq.shape)}")
    expected = (x_seq.shape[1], *x_seq.shape[3:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{fn}: target: expected shape {list(expected)} ([N, *d]) for x_seq of shape "
            f"{tuple(x_seq.shape)}, got {tuple(target.shape)}; x_seq is time-first [T, N, C, *d], "
            f"here T={steps}, N={x_seq.shape[1]}, C={x_seq.shape[2]}{_layout_hint(x_seq, target)}"
        )
    classes = x_seq.shape[2]
    if target.numel():
        _require_data(target, fn, "target", f"to check that the class indices lie in [0, {classes})")
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"{fn}: target: expected class indices in [0, {classes}) (C = x_seq.shape[2]), "
                f"got values in [{low}, {high}]"
            )
    target_seq = target.long().unsqueeze(0).expand(steps, *target.shape).reshape(-1, *target.shape[1:])
    return F.cross_entropy(x_seq.flatten(0, 1), target_seq)

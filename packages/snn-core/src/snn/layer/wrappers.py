"""Step-mode-aware versions of stateless torch layers.

Each class here subclasses the torch layer of the same name and :class:`~snn.base.StepModule`,
and takes the torch layer's arguments plus ``step_mode='s'``:

- step mode ``'s'``: the input is one time step (``[N, C, H, W]`` for ``Conv2d``) and the
  layer is exactly the torch layer;
- step mode ``'m'``: the input is a sequence (``[T, N, C, H, W]``); its rank is checked, then
  the torch layer runs once over ``[T * N, ...]`` (see
  :func:`snn.functional.forward.seq_to_ann_forward`) and the output is reshaped back to
  ``[T, N, ...]``. Batch normalisation therefore uses ``T * N`` samples for its statistics.

``step_mode`` follows the torch layer's own arguments and comes before the factory keywords
``device`` and ``dtype``, so positional calls written for SpikingJelly keep working. All the
behaviour lives in :class:`StepModeWrapper`; the classes below only name their torch layer and
the input layout they accept in step mode ``'m'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from snn.base import StepModule
from snn.functional.forward import seq_to_ann_forward

__all__ = [
    "StepModeWrapper",
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "Flatten",
    "Upsample",
]

_FACTORY_KEYWORDS = ("device", "dtype")


def _torch_layer_of(cls: type) -> type[nn.Module] | None:
    """The torch layer a wrapper class derives from directly (``None`` for abstract mixins)."""
    for base in cls.__bases__:
        if issubclass(base, nn.Module) and base.__module__.startswith("torch."):
            return base
    return None


def _signature_with_step_mode(torch_layer: type[nn.Module]) -> inspect.Signature:
    """The torch layer's ``__init__`` signature with ``step_mode='s'`` inserted."""
    parameters = list(inspect.signature(torch_layer.__init__).parameters.values())
    kinds = {p.kind for p in parameters}
    keyword_only = inspect.Parameter.VAR_POSITIONAL in kinds
    step_mode = inspect.Parameter(
        "step_mode",
        inspect.Parameter.KEYWORD_ONLY if keyword_only else inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default="s",
        annotation="str",
    )
    position = len(parameters)
    for index, parameter in enumerate(parameters):
        if parameter.name in _FACTORY_KEYWORDS or parameter.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.VAR_KEYWORD,
        ):
            position = index
            break
    if keyword_only:
        position = next(
            (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters)
        )
    return inspect.Signature(parameters[:position] + [step_mode] + parameters[position:])


def _spatial_output_size(output_size: Sequence[int] | None, spatial_dims: int) -> Sequence[int] | None:
    """Drop the ``[T, N, C]`` prefix of a full multi-step ``output_size``; torch handles the rest."""
    if output_size is not None and len(output_size) == spatial_dims + 3:
        return list(output_size)[-spatial_dims:]
    return output_size


class StepModeWrapper(StepModule):
    """Mixin turning a stateless torch layer into a step-mode-aware layer.

    A concrete wrapper is declared as ``class Conv2d(StepModeWrapper, nn.Conv2d)`` with the
    class attributes below; its ``__init__`` (the torch layer's arguments plus ``step_mode``)
    is generated from the torch layer's signature.

    Class attributes:
        multi_step_ranks: the input ranks accepted in step mode ``'m'`` (``None``: any rank of at
            least ``multi_step_min_rank``).
        multi_step_min_rank: the smallest rank accepted in step mode ``'m'`` when
            ``multi_step_ranks`` is ``None``.
        multi_step_layout: the accepted layout(s), for error messages, e.g.
            ``"[T, N, C, H, W]"``.
        direct_multi_step: call the torch layer on the whole sequence instead of folding time
            into the batch (for layers that accept any leading dimensions, like ``Linear``).
    """

    multi_step_ranks: ClassVar[tuple[int, ...] | None] = None
    multi_step_min_rank: ClassVar[int] = 2
    multi_step_layout: ClassVar[str] = "[T, N, *]"
    direct_multi_step: ClassVar[bool] = False
    _torch_layer: ClassVar[type[nn.Module]]
    _init_signature: ClassVar[inspect.Signature]

    if TYPE_CHECKING:
        # The generated __init__ (below) takes the torch layer's arguments plus step_mode; the
        # type checker cannot see it, so it is declared loosely here (before the torch layer in
        # the MRO of every wrapper).
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        torch_layer = _torch_layer_of(cls)
        if torch_layer is None:
            return
        cls._torch_layer = torch_layer
        cls._init_signature = _signature_with_step_mode(torch_layer)
        if "__init__" in cls.__dict__:
            return  # a hand-written __init__ wins

        def __init__(self: StepModeWrapper, *args: Any, **kwargs: Any) -> None:
            try:
                bound = cls._init_signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{cls.__name__}(): {exc}") from None
            step_mode = bound.arguments.pop("step_mode", "s")
            torch_layer.__init__(*bound.args, **bound.kwargs)
            self.step_mode = step_mode

        __init__.__signature__ = cls._init_signature  # type: ignore[attr-defined]  # read by inspect.signature
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__module__ = cls.__module__
        __init__.__doc__ = (
            f"Same arguments as :class:`torch.nn.{torch_layer.__name__}`, plus ``step_mode`` "
            f"(``'s'`` or ``'m'``, default ``'s'``)."
        )
        cls.__init__ = __init__  # type: ignore[method-assign]  # the generated constructor of this wrapper

    def check_multi_step_input(self, x: Any, argument: str = "x") -> torch.Tensor:
        """Check that ``x`` is a tensor with a rank this layer accepts in step mode ``'m'``.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``expected x with shape [T, N, ...], but got x with shape [...]``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__} (step_mode='m'): {argument}: expected a torch.Tensor with "
                f"shape {self.multi_step_layout}, got {type(x).__name__}"
            )
        ranks = self.multi_step_ranks
        accepted = x.dim() in ranks if ranks is not None else x.dim() >= self.multi_step_min_rank
        if not accepted:
            raise ValueError(
                f"{type(self).__name__} (step_mode='m'): expected {argument} with shape "
                f"{self.multi_step_layout}, but got {argument} with shape {list(x.shape)}"
            )
        return x

    def forward(self, x: torch.Tensor) -> Any:
        """``'s'``: the torch layer on one step; ``'m'``: rank check, then the layer over ``[T * N, ...]``."""
        torch_forward = super().forward  # type: ignore[misc]  # the torch layer's (after this mixin in the MRO), bound to self
        if self._step_mode == "s":
            return torch_forward(x)
        self.check_multi_step_input(x)
        if self.direct_multi_step:
            return torch_forward(x)
        return seq_to_ann_forward(x, torch_forward)

    def super_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The torch layer's own forward on ``x`` (one step, e.g. ``[N, C, H, W]``), whatever the
        step mode (SpikingJelly's batch-norm subclasses call it)."""
        torch_forward = super().forward  # type: ignore[misc]  # the torch layer's (after this mixin in the MRO)
        return torch_forward(x)

    def extra_repr(self) -> str:
        text = super().extra_repr()  # type: ignore[misc]  # the torch layer's (after this mixin in the MRO)
        return f"{text}, step_mode={self.step_mode}" if text else f"step_mode={self.step_mode}"


class _SpatialWrapper(StepModeWrapper):
    """A wrapper with a fixed number of spatial dimensions (``multi_step_ranks[0] - 3``)."""

    @property
    def _spatial_dims(self) -> int:
        return (self.multi_step_ranks or (3,))[0] - 3


class _ConvTransposeWrapper(_SpatialWrapper):
    """Transposed convolutions take an optional ``output_size``."""

    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        """Transposed convolution of ``x``.

        Args:
            x: ``[N, C, *spatial]`` in ``'s'``, ``[T, N, C, *spatial]`` in ``'m'``.
            output_size: the wanted output size: the spatial sizes, or the full shape (with
                ``T`` in ``'m'``).
        """
        torch_forward = self._torch_layer.forward
        if self._step_mode == "s":
            return torch_forward(self, x, output_size)
        self.check_multi_step_input(x)
        size = _spatial_output_size(output_size, self._spatial_dims)
        return seq_to_ann_forward(x, lambda flat: torch_forward(self, flat, size))  # type: ignore[return-value]  # one tensor out


class _MaxUnpoolWrapper(_SpatialWrapper):
    """Max-unpooling takes ``(x, indices, output_size=None)``."""

    def forward(  # type: ignore[override]  # torch's max-unpooling takes the indices too
        self, x: torch.Tensor, indices: torch.Tensor, output_size: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Undo a max pooling, putting ``x`` at ``indices``.

        Args:
            x: the pooled values, ``[N, C, *spatial]`` in ``'s'``, ``[T, N, C, *spatial]`` in
                ``'m'``.
            indices: the indices returned by the matching ``MaxPool`` (``return_indices=True``),
                same shape as ``x``.
            output_size: the wanted output size: the spatial sizes, or the full shape (with
                ``T`` in ``'m'``).

        Raises:
            TypeError: in ``'m'``, ``x`` or ``indices`` is not a tensor, or ``indices`` is not
                int64.
            ValueError: in ``'m'``, ``x`` or ``indices`` has the wrong rank, or ``indices`` a
                shape other than ``x``'s.
        """
        torch_forward = self._torch_layer.forward
        if self._step_mode == "s":
            return torch_forward(self, x, indices, output_size)
        self.check_multi_step_input(x, "x")
        self.check_multi_step_input(indices, "indices")
        name = type(self).__name__
        if indices.shape != x.shape:
            raise ValueError(
                f"{name} (step_mode='m'): expected indices with the shape of x {list(x.shape)} "
                f"(as the matching MaxPool returned them), but got indices with shape {list(indices.shape)}"
            )
        if indices.dtype != torch.int64:
            raise TypeError(
                f"{name} (step_mode='m'): indices: expected the int64 indices of a MaxPool with "
                f"return_indices=True, got dtype {indices.dtype}"
            )
        size = _spatial_output_size(output_size, self._spatial_dims)
        return seq_to_ann_forward(  # type: ignore[return-value]  # one tensor out
            (x, indices), lambda flat_x, flat_i: torch_forward(self, flat_x, flat_i, size)
        )


_L1 = "[T, N, C, L]"
_L2 = "[T, N, C, H, W]"
_L3 = "[T, N, C, D, H, W]"


# -- linear and convolutions ------------------------------------------------------------------


class Linear(StepModeWrapper, nn.Linear):
    """:class:`torch.nn.Linear` with a step mode: ``[N, *, in]`` in ``'s'``, ``[T, N, *, in]`` in ``'m'``.

    ``nn.Linear`` already accepts any leading dimensions, so step mode ``'m'`` calls it on the
    whole sequence.
    """

    multi_step_layout = "[T, N, *, in_features]"
    direct_multi_step = True


class Conv1d(_SpatialWrapper, nn.Conv1d):
    """:class:`torch.nn.Conv1d` with a step mode: ``[N, C, L]`` in ``'s'``, ``[T, N, C, L]`` in ``'m'``."""

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class Conv2d(_SpatialWrapper, nn.Conv2d):
    """:class:`torch.nn.Conv2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``."""

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class Conv3d(_SpatialWrapper, nn.Conv3d):
    """:class:`torch.nn.Conv3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``."""

    multi_step_ranks = (6,)
    multi_step_layout = _L3


class ConvTranspose1d(_ConvTransposeWrapper, nn.ConvTranspose1d):
    """:class:`torch.nn.ConvTranspose1d` with a step mode: ``[N, C, L]`` in ``'s'``, ``[T, N, C, L]`` in ``'m'``."""

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class ConvTranspose2d(_ConvTransposeWrapper, nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``."""

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class ConvTranspose3d(_ConvTransposeWrapper, nn.ConvTranspose3d):
    """:class:`torch.nn.ConvTranspose3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``."""

    multi_step_ranks = (6,)
    multi_step_layout = _L3


# -- normalisation ----------------------------------------------------------------------------


class BatchNorm1d(StepModeWrapper, nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` with a step mode: ``[N, C]`` or ``[N, C, L]`` in ``'s'``, one more leading ``T`` in ``'m'``.

    In step mode ``'m'`` the statistics are computed over all ``T * N`` samples.
    """

    multi_step_ranks = (3, 4)
    multi_step_layout = "[T, N, C] or [T, N, C, L]"


class BatchNorm2d(StepModeWrapper, nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``.

    In step mode ``'m'`` the statistics are computed over all ``T * N`` samples.
    """

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class BatchNorm3d(StepModeWrapper, nn.BatchNorm3d):
    """:class:`torch.nn.BatchNorm3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``.

    In step mode ``'m'`` the statistics are computed over all ``T * N`` samples.
    """

    multi_step_ranks = (6,)
    multi_step_layout = _L3


class GroupNorm(StepModeWrapper, nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` with a step mode: ``[N, C, *]`` in ``'s'``, ``[T, N, C, *]`` in ``'m'``.

    Group statistics are per sample, so each time step is normalised on its own.
    """

    multi_step_min_rank = 3
    multi_step_layout = "[T, N, C, *]"


# -- pooling ----------------------------------------------------------------------------------


class MaxPool1d(_SpatialWrapper, nn.MaxPool1d):
    """:class:`torch.nn.MaxPool1d` with a step mode: ``[N, C, L]`` in ``'s'``, ``[T, N, C, L]`` in ``'m'``.

    With ``return_indices=True`` the output is ``(values, indices)``, both ``[T, N, C, L_out]``
    in ``'m'``, ready for :class:`MaxUnpool1d` in ``'m'``.
    """

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class MaxPool2d(_SpatialWrapper, nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``.

    With ``return_indices=True`` the output is ``(values, indices)``, both ``[T, N, C, H', W']``
    in ``'m'``, ready for :class:`MaxUnpool2d` in ``'m'``.
    """

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class MaxPool3d(_SpatialWrapper, nn.MaxPool3d):
    """:class:`torch.nn.MaxPool3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``.

    With ``return_indices=True`` the output is ``(values, indices)``, ready for
    :class:`MaxUnpool3d` in ``'m'``.
    """

    multi_step_ranks = (6,)
    multi_step_layout = _L3


class MaxUnpool1d(_MaxUnpoolWrapper, nn.MaxUnpool1d):
    """:class:`torch.nn.MaxUnpool1d` with a step mode; called as ``(x, indices, output_size=None)``.

    ``x`` and ``indices`` are ``[N, C, L]`` in ``'s'`` and ``[T, N, C, L]`` in ``'m'``.
    """

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class MaxUnpool2d(_MaxUnpoolWrapper, nn.MaxUnpool2d):
    """:class:`torch.nn.MaxUnpool2d` with a step mode; called as ``(x, indices, output_size=None)``.

    ``x`` and ``indices`` are ``[N, C, H, W]`` in ``'s'`` and ``[T, N, C, H, W]`` in ``'m'``.
    """

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class MaxUnpool3d(_MaxUnpoolWrapper, nn.MaxUnpool3d):
    """:class:`torch.nn.MaxUnpool3d` with a step mode; called as ``(x, indices, output_size=None)``.

    ``x`` and ``indices`` are ``[N, C, D, H, W]`` in ``'s'`` and ``[T, N, C, D, H, W]`` in ``'m'``.
    """

    multi_step_ranks = (6,)
    multi_step_layout = _L3


class AvgPool1d(_SpatialWrapper, nn.AvgPool1d):
    """:class:`torch.nn.AvgPool1d` with a step mode: ``[N, C, L]`` in ``'s'``, ``[T, N, C, L]`` in ``'m'``."""

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class AvgPool2d(_SpatialWrapper, nn.AvgPool2d):
    """:class:`torch.nn.AvgPool2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``."""

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class AvgPool3d(_SpatialWrapper, nn.AvgPool3d):
    """:class:`torch.nn.AvgPool3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``."""

    multi_step_ranks = (6,)
    multi_step_layout = _L3


class AdaptiveAvgPool1d(_SpatialWrapper, nn.AdaptiveAvgPool1d):
    """:class:`torch.nn.AdaptiveAvgPool1d` with a step mode: ``[N, C, L]`` in ``'s'``, ``[T, N, C, L]`` in ``'m'``."""

    multi_step_ranks = (4,)
    multi_step_layout = _L1


class AdaptiveAvgPool2d(_SpatialWrapper, nn.AdaptiveAvgPool2d):
    """:class:`torch.nn.AdaptiveAvgPool2d` with a step mode: ``[N, C, H, W]`` in ``'s'``, ``[T, N, C, H, W]`` in ``'m'``."""

    multi_step_ranks = (5,)
    multi_step_layout = _L2


class AdaptiveAvgPool3d(_SpatialWrapper, nn.AdaptiveAvgPool3d):
    """:class:`torch.nn.AdaptiveAvgPool3d` with a step mode: ``[N, C, D, H, W]`` in ``'s'``, ``[T, N, C, D, H, W]`` in ``'m'``."""

    multi_step_ranks = (6,)
    multi_step_layout = _L3


# -- reshaping --------------------------------------------------------------------------------


class Flatten(StepModeWrapper, nn.Flatten):
    """:class:`torch.nn.Flatten` with a step mode: ``[N, *]`` in ``'s'``, ``[T, N, *]`` in ``'m'``.

    Dimensions are counted per step: ``Flatten()`` (``start_dim=1``) maps ``[T, N, C, H, W]``
    to ``[T, N, C * H * W]`` in ``'m'``. In step mode ``'m'`` the batch dimension ``N`` (dimension
    0 of a step) is kept, so ``start_dim`` must name a dimension after it.

    Raises:
        ValueError: (forward, step mode ``'m'``) ``x`` is not ``[T, N, *]`` with the dimensions
            ``start_dim`` .. ``end_dim`` of a step ``[N, *]``, or ``start_dim`` is the batch
            dimension 0 and ``end_dim`` a later one (flattening ``N`` into the features would mix
            the samples; ``start_dim = end_dim = 0`` changes nothing and passes).
    """

    multi_step_min_rank = 2
    multi_step_layout = "[T, N, *]"

    def check_multi_step_input(self, x: Any, argument: str = "x") -> torch.Tensor:
        """Check ``x`` ``[T, N, *]`` against ``start_dim`` and ``end_dim`` (counted per step ``[N, *]``).

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` has fewer than 2 dimensions, a step ``[N, *]`` lacks dimension
                ``start_dim`` or ``end_dim``, ``start_dim`` comes after ``end_dim``, or
                ``start_dim`` is the batch dimension 0 and ``end_dim`` a later one.
        """
        x = super().check_multi_step_input(x, argument)
        step_rank = x.dim() - 1
        start = self.start_dim + step_rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + step_rank if self.end_dim < 0 else self.end_dim
        where = (
            f"{type(self).__name__} (step_mode='m', start_dim={self.start_dim}, end_dim={self.end_dim})"
        )
        if not (0 <= start < step_rank and 0 <= end < step_rank):
            raise ValueError(
                f"{where}: expected {argument} with shape [T, N, *] whose steps [N, *] have the dimensions "
                f"start_dim and end_dim (dimensions are counted per step), but got {argument} with shape "
                f"{list(x.shape)} (steps of {step_rank} dimension{'s' if step_rank != 1 else ''})"
            )
        if start > end:
            raise ValueError(f"{where}: expected start_dim <= end_dim in a step [N, *], got {start} > {end}")
        if start == 0 and end > 0:
            raise ValueError(
                f"{where}: start_dim: expected a dimension after the batch dimension N (start_dim >= 1; "
                f"dimensions are counted per step [N, *] of the input [T, N, *]), got {self.start_dim}, "
                "which would flatten the samples of the batch together"
            )
        return x


class Upsample(StepModeWrapper, nn.Upsample):
    """:class:`torch.nn.Upsample` with a step mode: ``[N, C, *spatial]`` in ``'s'``, ``[T, N, C, *spatial]`` in ``'m'``."""

    multi_step_ranks = (4, 5, 6)
    multi_step_layout = f"{_L1}, {_L2} or {_L3}"

"""Recurrent containers: feed a module's previous output back into its input.

Both containers are :class:`~snn.base.MemoryModule` subclasses with one memory, ``y`` (the
previous output, ``None`` after a reset). In step mode ``'m'`` they loop their single-step
forward over time (:meth:`snn.base.MemoryModule.multi_step_forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snn.base import MemoryModule
from snn.layer.containers import check_single_step_children

__all__ = [
    "ElementWiseRecurrentContainer",
    "LinearRecurrentContainer",
]


def _check_sub_module(sub_module: Any) -> None:
    """``sub_module`` and every module inside it in step mode ``'s'``: checked at construction
    and again at every step, since a step mode can change in between (a module in ``'m'`` would
    read each step ``[N, *]`` as a sequence and answer wrongly)."""
    if not isinstance(sub_module, nn.Module):
        raise TypeError(f"sub_module: expected an nn.Module, got {type(sub_module).__name__}")
    check_single_step_children(
        (f"sub_module.{name}" if name else "sub_module", module) for name, module in sub_module.named_modules()
    )


def _reset_hint(module: nn.Module, state_shape: torch.Size, step_shape: torch.Size) -> ValueError:
    return ValueError(
        f"{type(module).__name__}: the state y has shape {list(state_shape)} but the input step has shape "
        f"{list(step_shape)} (did the batch size change?); call snn.functional.reset_net(net) before "
        "feeding inputs of a new shape"
    )


class ElementWiseRecurrentContainer(MemoryModule):
    """Element-wise recurrence: ``y[t] = sub_module(f(y[t-1], x[t]))`` with ``y[-1] = 0``.

    Args:
        sub_module: the module applied at each step; kept in step mode ``'s'``. Its output must
            have the shape of its input (it is combined element-wise with the next input).
        element_wise_function: ``f(y_prev, x) -> tensor`` combining the previous output and the
            current input, e.g. :func:`torch.add` or :func:`torch.mul`.
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Memories:
        y: the previous output (``None`` until the first step after a reset; then zeros of the
            input's shape, dtype and device).

    Raises:
        TypeError: ``sub_module`` is not a module or ``element_wise_function`` not callable;
            (forward) either returns something other than a tensor.
        ValueError: ``sub_module`` or a module inside it is not in step mode ``'s'`` (checked
            at construction and at every step); (forward) ``sub_module`` changes the step's shape.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = ElementWiseRecurrentContainer(nn.Identity(), torch.add, step_mode="m")
        >>> net(torch.tensor([[1.0], [2.0], [3.0]])).flatten().tolist()
        [1.0, 3.0, 6.0]
    """

    # memories (registered with register_memory); declared for the type checker
    y: torch.Tensor | None

    def __init__(
        self,
        sub_module: nn.Module,
        element_wise_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        step_mode: str = "s",
    ) -> None:
        super().__init__(step_mode)
        _check_sub_module(sub_module)
        if not callable(element_wise_function):
            raise TypeError(
                f"element_wise_function: expected a callable f(y_prev, x), got "
                f"{type(element_wise_function).__name__}"
            )
        self.sub_module = sub_module
        self.element_wise_function = element_wise_function
        self.register_memory("y", None)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *]`` -> ``y`` ``[N, *]``.

        Raises:
            TypeError: ``x`` is not a tensor, or ``element_wise_function`` or ``sub_module``
                returns something other than a tensor.
            ValueError: ``sub_module``'s output does not have the shape of ``x``; the previous
                output has another shape (the batch changed: call ``reset_net``); or a module of
                ``sub_module`` is no longer in step mode ``'s'``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor [N, *], got {type(x).__name__}")
        _check_sub_module(self.sub_module)
        if self.y is None:
            self.y = torch.zeros_like(x)
        elif self.y.shape != x.shape:
            raise _reset_hint(self, self.y.shape, x.shape)
        combined = self.element_wise_function(self.y, x)
        if not isinstance(combined, torch.Tensor):
            raise TypeError(
                f"element_wise_function: expected it to return a torch.Tensor shaped like the input step "
                f"{list(x.shape)}, got {type(combined).__name__}"
            )
        y = self.sub_module(combined)
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"sub_module: expected it to return a torch.Tensor shaped like the input step {list(x.shape)}, "
                f"got {type(y).__name__}"
            )
        if y.shape != x.shape:
            raise ValueError(
                f"sub_module: expected an output of the input step's shape {list(x.shape)} (it is combined "
                f"element-wise with the next input), got shape {list(y.shape)}"
            )
        self.y = y
        return y

    def extra_repr(self) -> str:
        name = getattr(self.element_wise_function, "__name__", repr(self.element_wise_function))
        return f"element_wise_function={name}, {super().extra_repr()}"


class LinearRecurrentContainer(MemoryModule):
    """Linear recurrence: ``y[t] = sub_module(W @ cat(x[t], y[t-1]) + b)`` with ``y[-1] = 0``.

    The recurrent connection ``rc`` is an ``nn.Linear(in_features + out_features,
    in_features, bias)`` applied to the concatenation (last dimension) of the current input and
    the previous output; ``sub_module`` maps its result (``in_features`` wide) to the output
    (``out_features`` wide).

    Args:
        sub_module: the module applied at each step (``[N, *, in_features]`` ->
            ``[N, *, out_features]``); kept in step mode ``'s'``.
        in_features: the size of the input's last dimension.
        out_features: the size of ``sub_module``'s output's last dimension.
        bias: whether ``rc`` has a bias.
        step_mode: ``'s'`` (input ``[N, *, in_features]``) or ``'m'`` (input
            ``[T, N, *, in_features]``).

    Memories:
        y: the previous output (``None`` until the first step after a reset; then zeros
            ``[N, *, out_features]`` of the input's dtype and device).

    Raises:
        TypeError: ``sub_module`` is not a module; the feature sizes are not ints.
        ValueError: a feature size is not positive, or ``sub_module`` or a module inside it is
            not in step mode ``'s'`` (checked at construction and at every step).
    """

    # memories (registered with register_memory); declared for the type checker
    y: torch.Tensor | None

    def __init__(
        self,
        sub_module: nn.Module,
        in_features: int,
        out_features: int,
        bias: bool = True,
        step_mode: str = "s",
    ) -> None:
        super().__init__(step_mode)
        _check_sub_module(sub_module)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value}")
        self.in_features = in_features
        self.out_features = out_features
        self.rc = nn.Linear(in_features + out_features, in_features, bias=bias)
        self.sub_module = sub_module
        self.register_memory("y", None)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, *, in_features]`` -> ``y`` ``[N, *, out_features]``.

        Raises:
            TypeError: ``x`` is not a tensor, or ``sub_module`` returns something else.
            ValueError: ``x``'s last dimension is not ``in_features``, ``sub_module``'s
                output's last dimension is not ``out_features``, or the previous output was
                for inputs of another shape (call ``reset_net``), or a module of ``sub_module``
                is no longer in step mode ``'s'``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor [N, *, {self.in_features}], got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape [N, *, {self.in_features}] (in_features = {self.in_features}), "
                f"got {list(x.shape)}"
            )
        _check_sub_module(self.sub_module)
        if self.y is None:
            self.y = torch.zeros(*x.shape[:-1], self.out_features, dtype=x.dtype, device=x.device)
        elif self.y.shape[:-1] != x.shape[:-1]:
            raise _reset_hint(self, self.y.shape, x.shape)
        y = self.sub_module(self.rc(torch.cat((x, self.y), dim=-1)))
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"sub_module: expected it to return a torch.Tensor [N, *, {self.out_features}], got {type(y).__name__}"
            )
        if y.dim() == 0 or y.shape[-1] != self.out_features:
            raise ValueError(
                f"sub_module: expected an output of shape [N, *, {self.out_features}] "
                f"(out_features = {self.out_features}), got {list(y.shape)}"
            )
        self.y = y
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {super().extra_repr()}"

"""Containers that run single-step modules over time sequences.

Every container here wraps modules that stay in step mode ``'s'`` and takes care of the time
dimension itself:

- :class:`MultiStepContainer`: ``[T, N, *]`` one step at a time (stateful children), or with
  any registered forward strategy;
- :class:`SeqToANNContainer`: ``[T, N, *]`` folded to ``[T * N, *]`` (stateless children);
- :class:`TLastMultiStepContainer`, :class:`TLastSeqToANNContainer`: the same with time last,
  ``[N, *, T]``;
- :class:`StepModeContainer`: a sequential container with its own step mode.

``snn.functional.set_step_mode`` does not descend into these containers: their children keep
step mode ``'s'``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn

from snn.base import MemoryModule, MultiStepModule, StepModule
from snn.functional.forward import (
    multi_step_forward,
    seq_to_ann_forward,
    t_last_multi_step_forward,
    t_last_seq_to_ann_forward,
)
from snn.neuron.base import check_flag

__all__ = [
    "check_single_step_children",
    "MultiStepContainer",
    "SeqToANNContainer",
    "TLastMultiStepContainer",
    "TLastSeqToANNContainer",
    "StepModeContainer",
]


def check_single_step_children(modules: Iterable[tuple[str, nn.Module]]) -> None:
    """Check that each ``(name, module)`` that has a step mode is in step mode ``'s'``.

    Args:
        modules: the ``(name, module)`` pairs to check (a container's modules).

    Raises:
        ValueError: ``"{Cls}.step_mode must be 's' inside this container."`` for the first module
            in another step mode.
    """
    for name, module in modules:
        mode = getattr(module, "step_mode", "s")
        if mode != "s":
            raise ValueError(
                f"{type(module).__name__}.step_mode must be 's' inside this container. "
                f"(child {name!r} has step_mode={mode!r}; the container handles the time dimension, "
                f"so construct the child with step_mode='s')"
            )


def _check_stateless_children(modules: Iterable[tuple[str, nn.Module]], runner: str, instead: str) -> None:
    """Refuse stateful modules (:class:`~snn.base.MemoryModule`: neurons, ``layer.Dropout`` ...)
    among a container's ``(name, module)`` pairs when ``runner`` runs all time steps at once:
    they would see the steps as one batch and keep no state from one step to the next.

    Raises:
        ValueError: naming the stateful modules and what to use instead (``instead``).
    """
    stateful = [name for name, m in modules if isinstance(m, MemoryModule)]
    if stateful:
        raise ValueError(
            f"{runner} runs all time steps at once and keeps no state between them, "
            f"but children {stateful} are stateful; {instead}"
        )


def _identity(x: Any) -> Any:
    return x


class _SingleStepSequence(nn.Sequential):
    """Shared behaviour: children checked to be single-step; children as a tuple of callables."""

    def _check_children(self) -> list[tuple[str, nn.Module]]:
        """Every module inside (children and their submodules) in step mode ``'s'``: checked at
        construction and again at every call, since a step mode can change in between (a child
        in ``'m'`` would read each step ``[N, *]`` as a sequence and answer wrongly).

        Returns:
            the ``(name, module)`` pairs checked, for other checks of the same call.
        """
        modules = [(name, m) for name, m in self.named_modules() if m is not self]
        check_single_step_children(modules)
        return modules

    def _children_callables(self) -> tuple[Callable[..., Any], ...]:
        children = tuple(self._modules.values())
        return children if children else (_identity,)

    def _with_children(self, children: OrderedDict[str, nn.Module]) -> _SingleStepSequence:
        """A container of the same kind and settings holding ``children`` (used by slicing)."""
        return type(self)(children)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._with_children(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)


class MultiStepContainer(_SingleStepSequence, MultiStepModule):
    """Runs single-step modules over a sequence ``[T, N, *]``, by default one step at a time.

    The children are applied in order to each time step, like an ``nn.Sequential`` run per
    step, so stateful children (neurons in step mode ``'s'``) carry their state through the
    sequence. ``strategy`` names any registered forward strategy (see
    :func:`snn.hookspecs.snn_register_forward_strategies`): the built-in ``"loop"`` (default),
    ``"checkpointed"`` (activation checkpointing, option ``k``), ``"t_last"`` (time-last
    inputs) ... or a third-party one. The strategy is called as
    ``strategy(step_module, x_seq, **strategy_options)``, where ``step_module`` is the only
    child, or an ``nn.Sequential`` sharing the children.

    The container is a :class:`~snn.base.MultiStepModule`: its ``step_mode`` is always ``'m'``.

    Args:
        *modules: the single-step modules (or one ``OrderedDict`` of them, as for
            ``nn.Sequential``).
        strategy: the registered forward strategy name (default ``"loop"``).
        **strategy_options: keyword options passed to the strategy on every call (e.g.
            ``k=4`` for ``"checkpointed"``).

    Raises:
        ValueError: a child is not in step mode ``'s'``; ``strategy`` runs a multi-step module
            (``"chunked"``), or runs all steps at once (``"seq_to_ann"``) while a child is
            stateful: the container's children could not run that way (checked again at every
            call, as children can change).
        TypeError: ``strategy`` is not a string, or ``strategy_options`` holds an option the
            strategy does not take (or lacks one it requires); checked here, at construction.
        snn.errors.RegistryEntryNotFoundError: no plugin registered ``strategy`` (lists the
            known names); raised here, at construction.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = MultiStepContainer(nn.Linear(3, 2), nn.ReLU())
        >>> net(torch.randn(4, 5, 3)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, *modules: Any, strategy: str = "loop", **strategy_options: Any) -> None:
        super().__init__(*modules)
        inner = self._check_children()
        self.step_mode = "m"
        if not isinstance(strategy, str):
            raise TypeError(f"strategy: expected a registered strategy name (str), got {type(strategy).__name__}")
        self.strategy = strategy
        self.strategy_options = dict(strategy_options)
        implementation = self._check_strategy(inner)
        if implementation is not None:
            from snn.strategies import check_strategy_options

            check_strategy_options(strategy, implementation, self.strategy_options)

    def _with_children(self, children: OrderedDict[str, nn.Module]) -> MultiStepContainer:
        return type(self)(children, strategy=self.strategy, **self.strategy_options)

    @staticmethod
    def _uses_loop_fast_path(strategy: str, options: dict[str, Any]) -> bool:
        return strategy == "loop" and not options

    def _check_strategy(self, inner: list[tuple[str, nn.Module]]) -> Callable[..., Any] | None:
        """The strategy's implementation (``None`` for the plain loop), after checking that it
        runs what the container holds (``inner``: the modules inside, from
        :meth:`_check_children`): single-step children, or for a strategy that runs each step on
        its own (``module="stateless"``) children without state. A strategy that runs a
        multi-step module cannot run them at all."""
        if self._uses_loop_fast_path(self.strategy, self.strategy_options):
            return None
        from snn.plugins import get_registry

        entry = get_registry().strategy(self.strategy)
        runs = entry.metadata.get("module", "single_step")
        if runs == "multi_step":
            raise ValueError(
                f"strategy {self.strategy!r} runs a multi-step module, but MultiStepContainer runs single-step "
                "children; put the multi-step modules in an nn.Sequential and call "
                "snn.functional.chunk_multi_step_forward, or choose a single-step strategy such as 'loop'"
            )
        if runs == "stateless":
            _check_stateless_children(
                inner, f"strategy {self.strategy!r}", "use a strategy that runs one step at a time, such as 'loop'"
            )
        return cast(Callable[..., Any], entry.implementation)

    def step_module(self) -> nn.Module:
        """The module a strategy runs per step: the only child, or a Sequential of the children."""
        children = list(self._modules.values())
        return children[0] if len(children) == 1 else nn.Sequential(*children)

    def forward(self, x_seq: torch.Tensor) -> Any:
        """Run the children over ``x_seq``.

        Args:
            x_seq: ``[T, N, *]`` (or whatever layout the chosen strategy expects).

        Returns:
            ``[T, N, *out]``: the per-step outputs stacked along time.
        """
        implementation = self._check_strategy(self._check_children())
        if implementation is None:
            return multi_step_forward(x_seq, self._children_callables())
        return implementation(self.step_module(), x_seq, **self.strategy_options)

    def extra_repr(self) -> str:
        text = f"step_mode={self.step_mode}"
        if self.strategy != "loop" or self.strategy_options:
            text += f", strategy={self.strategy!r}"
            text += "".join(f", {k}={v!r}" for k, v in self.strategy_options.items())
        return text


class SeqToANNContainer(_SingleStepSequence, MultiStepModule):
    """Runs stateless modules once over all time steps, with time folded into the batch.

    ``[T, N, *]`` is flattened to ``[T * N, *]``, the children run once in order, and the output
    is unflattened to ``[T, N, *out]`` (see :func:`snn.functional.forward.seq_to_ann_forward`).
    Batch-normalisation children therefore use ``T * N`` samples for their statistics. A tuple
    input ``(a, b, ...)`` is splatted into the first child (e.g. ``(pooled, indices)`` into
    ``nn.MaxUnpool2d``); tuple outputs are unflattened item by item.

    Its ``step_mode`` is always ``'m'``.

    Args:
        *modules: the stateless modules, each in step mode ``'s'`` (plain torch modules are
            fine).

    Raises:
        ValueError: a child is not in step mode ``'s'``, or a child (or a module inside one) is
            stateful (a :class:`~snn.base.MemoryModule` such as a neuron: it would see the ``T``
            steps as one batch; put it in a :class:`MultiStepContainer`). Checked at
            construction and again at every call, as children can change.
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__(*modules)
        self._check_stateless(self._check_children())
        self.step_mode = "m"

    def _check_stateless(self, inner: list[tuple[str, nn.Module]]) -> None:
        _check_stateless_children(
            inner,
            type(self).__name__,
            "run stateful modules one step at a time with MultiStepContainer (or a module in step mode 'm')",
        )

    def forward(self, x_seq: torch.Tensor | tuple[torch.Tensor, ...]) -> Any:
        """Apply the children to ``x_seq`` ``[T, N, *]`` (or a tuple of such tensors).

        Returns:
            ``[T, N, *out]``, or a tuple of such tensors.

        Raises:
            ValueError: a child is not in step mode ``'s'`` or is stateful.
        """
        self._check_stateless(self._check_children())
        return seq_to_ann_forward(x_seq, self._children_callables())

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class TLastMultiStepContainer(_SingleStepSequence, MultiStepModule):
    """Runs single-step modules over a time-last sequence ``[N, *, T]``, one step at a time.

    The time-last analogue of :class:`MultiStepContainer` (with the ``"loop"`` strategy):
    stateful children carry their state through the steps, and the outputs are stacked along
    a new last dimension. Its ``step_mode`` is always ``'m'``.

    Args:
        *modules: the single-step modules.

    Raises:
        ValueError: a child is not in step mode ``'s'``.
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__(*modules)
        self._check_children()
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> Any:
        """Apply the children to each step ``x_seq[..., t]`` of ``x_seq`` ``[N, *, T]``.

        Returns:
            ``[N, *out, T]``.
        """
        self._check_children()
        return t_last_multi_step_forward(x_seq, self._children_callables())

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class TLastSeqToANNContainer(_SingleStepSequence, MultiStepModule):
    """Runs stateless modules over a time-last sequence ``[N, *, T]``, vectorised over time.

    The children are applied through :func:`torch.vmap` over the last dimension (see
    :func:`snn.functional.forward.t_last_seq_to_ann_forward`); they must be pure functions of
    their input (no BatchNorm in training mode). Its ``step_mode`` is always ``'m'``.

    Args:
        *modules: the stateless modules.

    Raises:
        ValueError: a child is not in step mode ``'s'``, or a child (or a module inside one) is
            stateful (put it in a :class:`TLastMultiStepContainer`). Checked at construction
            and again at every call.
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__(*modules)
        self._check_stateless(self._check_children())
        self.step_mode = "m"

    def _check_stateless(self, inner: list[tuple[str, nn.Module]]) -> None:
        _check_stateless_children(
            inner, type(self).__name__, "run stateful modules one step at a time with TLastMultiStepContainer"
        )

    def forward(self, x_seq: torch.Tensor) -> Any:
        """Apply the children to every step of ``x_seq`` ``[N, *, T]`` at once.

        Returns:
            ``[N, *out, T]`` (or a tuple of such tensors).

        Raises:
            ValueError: a child is not in step mode ``'s'`` or is stateful.
        """
        self._check_stateless(self._check_children())
        return t_last_seq_to_ann_forward(x_seq, self._children_callables())

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class StepModeContainer(_SingleStepSequence, StepModule):
    """A sequential container with its own step mode.

    In step mode ``'s'`` it is a plain ``nn.Sequential`` over one step ``[N, *]``. In step mode
    ``'m'`` it takes a sequence ``[T, N, *]`` and runs the children one step at a time when
    ``stateful`` (:func:`~snn.functional.forward.multi_step_forward`), or once over
    ``[T * N, *]`` when not (:func:`~snn.functional.forward.seq_to_ann_forward`). The children
    stay in step mode ``'s'``.

    Args:
        stateful: whether the children keep state across time steps.
        step_mode: ``'s'`` or ``'m'`` (default ``'s'``). Note the signature: ``step_mode`` is the
            second positional argument, before the modules.
        *modules: the single-step modules.

    Raises:
        TypeError: ``stateful`` is not a bool (or 0 or 1), or a module was passed where ``step_mode`` goes.
        ValueError: ``step_mode`` is not ``'s'`` / ``'m'``, or a child is not in step mode
            ``'s'``, or ``stateful`` is false in step mode ``'m'`` while a child (or a module
            inside one) is stateful (a :class:`~snn.base.MemoryModule` such as a neuron, which
            would see the ``T`` steps as one batch; pass ``stateful=True``). Checked at
            construction and again at every call in step mode ``'m'``.
    """

    def __init__(self, stateful: bool, step_mode: str = "s", *modules: Any) -> None:
        stateful = check_flag("stateful", stateful, integers=True)
        if isinstance(step_mode, nn.Module):
            raise TypeError(
                f"step_mode: expected 's' or 'm', got a module ({type(step_mode).__name__}); the "
                f"signature is StepModeContainer(stateful, step_mode='s', *modules)"
            )
        super().__init__(*modules)
        inner = self._check_children()
        self.stateful = stateful
        self.step_mode = step_mode
        if step_mode == "m":
            self._check_stateless(inner)

    def _check_stateless(self, inner: list[tuple[str, nn.Module]]) -> None:
        if not self.stateful:
            _check_stateless_children(
                inner,
                "StepModeContainer(stateful=False) in step mode 'm'",
                "construct it with stateful=True (StepModeContainer(True, 'm', ...)) to run them one step at a time",
            )

    def _with_children(self, children: OrderedDict[str, nn.Module]) -> StepModeContainer:
        return type(self)(self.stateful, self.step_mode, children)

    def forward(self, x: torch.Tensor) -> Any:
        """Apply the children to ``x``: one step ``[N, *]`` in ``'s'``, ``[T, N, *]`` in ``'m'``.

        Raises:
            ValueError: a child is not in step mode ``'s'``; in step mode ``'m'`` with
                ``stateful=False``, a child is stateful.
        """
        inner = self._check_children()
        callables = self._children_callables()
        if self._step_mode == "s":
            y = x
            for module in callables:
                y = module(y)
            return y
        if self.stateful:
            return multi_step_forward(x, callables)
        self._check_stateless(inner)
        return seq_to_ann_forward(x, callables)

    def extra_repr(self) -> str:
        return f"stateful={self.stateful}, step_mode={self.step_mode}"

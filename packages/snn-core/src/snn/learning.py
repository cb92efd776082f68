"""The online-learner interface that ``snn_register_online_learners`` plugins implement.

:mod:`snn.functional` dispatches ``fptt_online_training_init_w_ra``, ``fptt_online_training``
and ``ottt_online_training`` to the learners registered as ``fptt`` and ``ottt``; ``snn train
--learner NAME`` uses any registered learner through the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["OnlineLearner"]


class OnlineLearner(ABC):
    """An online learning rule: updates the weights while a sequence is presented.

    Subclasses implement :meth:`train_sequence`; the other methods have sensible defaults.

    Attributes:
        time_dim: where time sits in the ``x_seq`` handed to :meth:`train_sequence`:
            ``0`` for ``[T, N, *]`` (FPTT) or ``1`` for ``[N, T, *]`` (OTTT, SLTT).
    """

    time_dim: int = 0

    def init_state(self, model: nn.Module | None, optimizer: torch.optim.Optimizer) -> Any:
        """State carried across calls of :meth:`train_sequence` (FPTT: the running average)."""
        return None

    @abstractmethod
    def train_sequence(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x_seq: torch.Tensor,
        target_seq: Any,
        f_loss_t: Callable[[Any, Any], torch.Tensor],
        state: Any = None,
        **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Present one sequence, updating the weights online.

        Args:
            model: a single-step network (its neurons in step mode ``'s'``).
            optimizer: the optimizer of ``model``'s parameters.
            x_seq: the inputs, time on dimension :attr:`time_dim`.
            target_seq: targets indexable per step along the same time dimension.
            f_loss_t: the per-step loss ``f_loss_t(y_t, target_t) -> scalar``.
            state: what :meth:`init_state` returned (mutated in place where documented).
            **options: rule-specific options (``online=`` for OTTT, ``alpha=`` for FPTT).

        Returns:
            ``(loss, y_seq)``: the summed per-step loss (0-dim, detached) and the detached
            outputs with time on :attr:`time_dim`, or ``None`` when the rule keeps none.
        """

    def make_neuron(self, **lif_kwargs: Any) -> nn.Module:
        """A single-step spiking neuron suited to this rule (default: :class:`snn.neuron.LIFNode`)."""
        from snn.neuron import LIFNode

        return LIFNode(step_mode="s", **lif_kwargs)

    def wrap_model(self, layers: Sequence[nn.Module]) -> nn.Module:
        """Assemble layers into the network the rule trains (default: :class:`torch.nn.Sequential`)."""
        return nn.Sequential(*layers)

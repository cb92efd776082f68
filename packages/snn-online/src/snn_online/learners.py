"""The online learners ``ottt``, ``sltt`` and ``fptt`` (implementations of :class:`snn.learning.OnlineLearner`).

:mod:`snn.functional` dispatches ``ottt_online_training`` to :class:`OTTTLearner` and
``fptt_online_training_init_w_ra`` / ``fptt_online_training`` to :class:`FPTTLearner`; ``snn train
--learner NAME`` reaches all three through the registry.

Deliberate differences from SpikingJelly (all listed in the migration guide, ``docs/migration.rst``):

- OTTT / SLTT: the network is detached (``snn.functional.detach_net``) after every step and a
  ``[spike, trace]`` output is unwrapped to its spikes, so networks with ordinary stateful
  modules (e.g. a plain ``LIFNode`` read-out) train for more than one step.
- FPTT: a running average ``w_ra`` whose length or shapes do not match the optimizer's
  parameters raises :class:`ValueError` naming the mismatch (SpikingJelly raises a bare
  ``IndexError`` or a broadcasting error); a parameter that gets no gradient from the second
  forward raises :class:`RuntimeError` naming it (SpikingJelly: ``TypeError`` from
  ``None / (2 * alpha)``); the previous gradient is kept as a copy, so an optimizer whose
  ``zero_grad`` zeroes gradients in place does not silently erase it; the user's loss tensor is
  not modified in place (the regulariser is added out of place; the values are identical).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snn.learning import OnlineLearner
from snn.models import check_flag

__all__ = ["OTTTLearner", "SLTTLearner", "FPTTLearner", "DEFAULT_FPTT_ALPHA"]

#: The FPTT regulariser strength used when a caller of :meth:`FPTTLearner.train_sequence` gives none.
DEFAULT_FPTT_ALPHA = 0.5


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the learners
# ---------------------------------------------------------------------------------------------


def _check_common(model: Any, optimizer: Any, f_loss_t: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not (hasattr(optimizer, "param_groups") and callable(getattr(optimizer, "step", None))
            and callable(getattr(optimizer, "zero_grad", None))):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not callable(f_loss_t):
        raise TypeError(f"f_loss_t: expected a callable f_loss_t(y_t, target_t) -> scalar, got {type(f_loss_t).__name__}")


def _no_options(learner: str, options: dict[str, Any], accepted: str) -> None:
    if options:
        raise TypeError(
            f"options: the {learner!r} learner accepts only {accepted}, got {', '.join(sorted(options))}"
        )


def _checked_scalar_loss(loss: Any, t: int) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"f_loss_t: expected a scalar tensor loss at step {t}, got {what}")
    return loss


def _spikes_of(y: Any) -> Any:
    """A ``[spike, trace]`` output (list or tuple) becomes its spikes; anything else is kept."""
    return y[0] if isinstance(y, (list, tuple)) else y


def _optimizer_parameters(optimizer: Any) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _detach_net(model: nn.Module) -> None:
    from snn.functional import detach_net

    detach_net(model)


# ---------------------------------------------------------------------------------------------
# OTTT and SLTT: one spatial backward per step
# ---------------------------------------------------------------------------------------------


class _PerStepSpatialLearner(OnlineLearner):
    """The loop OTTT and SLTT share: one forward and one backward per time step.

    The temporal credit assignment (or its absence) lives in the network's neurons; the loop
    only presents the steps, back-propagates each step's loss and steps the optimizer.
    """

    time_dim = 1
    name = ""

    def train_sequence(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x_seq: torch.Tensor,
        target_seq: Any,
        f_loss_t: Callable[[Any, Any], torch.Tensor],
        state: Any = None,
        *,
        online: bool = True,
        **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Present a batch-first sequence, back-propagating each step's loss on its own.

        For each step ``t``: ``y_t = model(x_seq[:, t])`` (a ``[spike, trace]`` output is
        unwrapped to its spikes), ``loss_t = f_loss_t(y_t, target_seq[:, t].contiguous())``,
        ``loss_t.backward()``, then ``snn.functional.detach_net(model)``. With ``online=True``
        the gradients are zeroed before and the optimizer steps after every step; with
        ``online=False`` they are zeroed once, accumulated over all steps and applied by one
        optimizer step at the end.

        Args:
            model: a single-step network (OTTT: an :class:`~snn_online.layer.OTTTSequential` of
                :class:`~snn_online.neuron.OTTTLIFNode`; SLTT: :class:`~snn_online.neuron.SLTTLIFNode`).
            optimizer: the optimizer of ``model``'s parameters.
            x_seq: inputs ``[N, T, *]`` (batch first), any float dtype.
            target_seq: targets ``[N, T', *]`` with ``T' >= T``; step ``t`` gets
                ``target_seq[:, t]``.
            f_loss_t: ``f_loss_t(y_t, target_t) -> scalar tensor``.
            state: unused (these rules keep no state across calls).
            online: ``True`` to update after every step, ``False`` to update once per sequence.
            **options: none accepted.

        Returns:
            ``(batch_loss, y_seq)``: the sum (not the mean) of the per-step losses, a detached
            0-dim tensor; and the detached outputs stacked on dimension 1, ``[N, T, *out]``.

        Raises:
            TypeError: an argument of the wrong type (``online`` not a bool, 0, 1, NumPy bool
                or one-element boolean tensor; ``x_seq`` or ``target_seq`` not a tensor; a
                non-scalar loss; an unknown option).
            ValueError: ``x_seq`` without a time dimension or with no steps, or
                ``target_seq`` shorter than ``x_seq`` in time.
        """
        _no_options(self.name, options, "online=")
        _check_common(model, optimizer, f_loss_t)
        online = check_flag("online", online, integers=True)
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"x_seq: expected a tensor [N, T, *], got {type(x_seq).__name__}")
        if not isinstance(target_seq, torch.Tensor):
            raise TypeError(f"target_seq: expected a tensor [N, T, *], got {type(target_seq).__name__}")
        if x_seq.dim() < 2 or target_seq.dim() < 2:
            bad, tensor = ("x_seq", x_seq) if x_seq.dim() < 2 else ("target_seq", target_seq)
            raise ValueError(
                f"{bad}: expected a batch-first sequence [N, T, *] (at least 2 dimensions), "
                f"got shape {tuple(tensor.shape)}"
            )
        steps = x_seq.shape[1]
        if steps == 0:
            raise ValueError(f"x_seq: expected at least one time step on dimension 1, got shape {tuple(x_seq.shape)}")
        if target_seq.shape[1] < steps:
            raise ValueError(
                f"target_seq: expected at least {steps} time steps on dimension 1 (as many as x_seq), "
                f"got shape {tuple(target_seq.shape)}"
            )

        x_steps = x_seq.transpose(0, 1)
        target_steps = target_seq.transpose(0, 1)
        batch_loss: Any = 0.0
        outputs: list[torch.Tensor] = []
        if not online:
            optimizer.zero_grad()
        for t in range(steps):
            if online:
                optimizer.zero_grad()
            y_t = _spikes_of(model(x_steps[t]))
            loss = _checked_scalar_loss(f_loss_t(y_t, target_steps[t].contiguous()), t)
            loss.backward()
            if online:
                optimizer.step()
            _detach_net(model)
            batch_loss = batch_loss + loss.detach()
            outputs.append(y_t.detach())
        if not online:
            optimizer.step()
        return batch_loss, torch.stack(outputs, dim=1)


class OTTTLearner(_PerStepSpatialLearner):
    """OTTT (online training through time; Xiao et al., NeurIPS 2022).

    Weight gradients use presynaptic eligibility traces instead of back-propagation through
    time, so memory does not grow with the sequence length. Build the network from
    :meth:`make_neuron` (an :class:`~snn_online.neuron.OTTTLIFNode`) and :meth:`wrap_model`
    (an :class:`~snn_online.layer.OTTTSequential`). Inputs are batch first (``time_dim = 1``).
    """

    name = "ottt"

    def make_neuron(self, **lif_kwargs: Any) -> nn.Module:
        """An :class:`~snn_online.neuron.OTTTLIFNode` built with ``lif_kwargs``."""
        from snn_online.neuron import OTTTLIFNode

        return OTTTLIFNode(**lif_kwargs)

    def wrap_model(self, layers: Sequence[nn.Module]) -> nn.Module:
        """An :class:`~snn_online.layer.OTTTSequential` of ``layers``."""
        from snn_online.layer import OTTTSequential

        return OTTTSequential(*layers)


class SLTTLearner(_PerStepSpatialLearner):
    """SLTT (spatial learning through time; Meng et al., ICCV 2023).

    Drops the temporal gradient paths: each step's loss is back-propagated through the network
    at that step only. Build the network from :meth:`make_neuron` (an
    :class:`~snn_online.neuron.SLTTLIFNode`); the default :meth:`wrap_model`
    (:class:`torch.nn.Sequential`) is enough, since SLTT neurons emit plain spikes. Inputs are
    batch first (``time_dim = 1``). The paper's SLTT-K (random subset of steps) is not provided.
    """

    name = "sltt"

    def make_neuron(self, **lif_kwargs: Any) -> nn.Module:
        """An :class:`~snn_online.neuron.SLTTLIFNode` built with ``lif_kwargs``."""
        from snn_online.neuron import SLTTLIFNode

        return SLTTLIFNode(**lif_kwargs)


# ---------------------------------------------------------------------------------------------
# FPTT: a regularised update at every step
# ---------------------------------------------------------------------------------------------


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, torch.Tensor) and alpha.numel() == 1 and not alpha.is_complex() and alpha.dtype != torch.bool:
        alpha = alpha.item()  # a one-element tensor, as the reference accepts
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha: expected a positive float, got {type(alpha).__name__} ({alpha!r})")
    number = float(alpha)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"alpha: expected a finite float > 0, got {alpha!r}")
    return number


def _check_w_ra(w_ra: Any, parameters: list[torch.Tensor]) -> list[torch.Tensor]:
    if w_ra is None:
        raise TypeError(
            "w_ra: the 'fptt' learner needs the running average returned by init_state(model, optimizer) "
            "(snn.functional.fptt_online_training_init_w_ra(optimizer)), got None"
        )
    if not isinstance(w_ra, list):
        raise TypeError(
            f"w_ra: expected the list returned by fptt_online_training_init_w_ra (it is updated in place), "
            f"got {type(w_ra).__name__}"
        )
    if len(w_ra) != len(parameters):
        raise ValueError(
            f"w_ra: expected one tensor per optimizer parameter ({len(parameters)}), got {len(w_ra)}; "
            "build it with fptt_online_training_init_w_ra(optimizer) for this optimizer"
        )
    for i, (average, parameter) in enumerate(zip(w_ra, parameters)):
        if not isinstance(average, torch.Tensor):
            raise TypeError(f"w_ra[{i}]: expected a tensor, got {type(average).__name__}")
        if average.shape != parameter.shape:
            raise ValueError(
                f"w_ra[{i}]: expected the shape of optimizer parameter {i}, {tuple(parameter.shape)}, "
                f"got {tuple(average.shape)}"
            )
    return w_ra


class FPTTLearner(OnlineLearner):
    """FPTT (forward propagation through time; Kag & Saligrama, ICML 2021; for SNNs Yin et al. 2023).

    At every step the weights take one optimizer step on the instantaneous loss plus a dynamic
    regulariser that pulls them towards a running average ``w_ra`` shifted by the previous
    step's gradient; the running average is then updated with the gradient of the same step's
    loss at the new weights. Hidden states are detached after every step, so nothing is
    back-propagated through time. The realisation follows SpikingJelly's
    ``fptt_online_training`` exactly (mean-reduced regulariser per parameter tensor; the second
    forward starts from the already-advanced state, which is then restored). Inputs are time
    first (``time_dim = 0``).
    """

    time_dim = 0
    name = "fptt"

    def init_state(self, model: nn.Module | None, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """Independent snapshots of the optimizer's parameters: the initial running average.

        Args:
            model: unused (may be ``None``).
            optimizer: the optimizer whose parameters FPTT will update.

        Returns:
            ``[p.detach().clone() for every parameter in param_groups order]``: new storage,
            same shapes, dtypes and devices as the parameters.
        """
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        return [p.detach().clone() for p in _optimizer_parameters(optimizer)]

    def train_sequence(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x_seq: Any,
        target_seq: Any,
        f_loss_t: Callable[[Any, Any], torch.Tensor],
        state: Any = None,
        *,
        alpha: float = DEFAULT_FPTT_ALPHA,
        **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Present a time-first sequence, updating the weights at every step.

        With ``P`` the optimizer's parameters (``param_groups`` order) and ``g`` the previous
        gradients (zero at the start of every call), for each step ``t``:

        1. ``L = f_loss_t(model(x_t), target_t) + (alpha/2) * sum_i mse_loss(P[i], w_ra[i] + g[i]/(2 alpha))``;
           ``L.backward()``; ``optimizer.step()``; ``detach_net(model)``; remember the
           memories of every :class:`snn.base.MemoryModule`.
        2. Unless ``t`` is the last step: forward ``x_t`` again from the advanced state with the
           new weights, back-propagate ``f_loss_t`` alone, and set ``g[i] = P[i].grad`` and
           ``w_ra[i] = (w_ra[i] + P[i]) / 2 - P[i].grad / (2 alpha)``.
        3. Zero the gradients and restore the remembered memories.

        Args:
            model: a single-step network.
            optimizer: the optimizer of ``model``'s parameters.
            x_seq: inputs ``[T, N, *]`` (time first), a tensor.
            target_seq: indexable per step with at least ``T`` entries (``target_seq[t]``).
            f_loss_t: ``f_loss_t(y_t, target_t) -> scalar tensor``.
            state: the running average ``w_ra`` from :meth:`init_state`; its entries are
                replaced in place (the list object is kept).
            alpha: the regulariser strength, a float > 0. ``snn.functional.fptt_online_training``
                always passes it; callers that give none (``snn train --learner fptt``) get
                :data:`DEFAULT_FPTT_ALPHA` (0.5, a value used in Yin et al.'s FPTT-SNN scripts).
            **options: none accepted.

        Returns:
            ``(loss, y_seq)``: the sum over steps of ``f_loss_t`` at the first forward (without
            the regulariser), detached 0-dim; and the detached first-forward outputs stacked on
            dimension 0, ``[T, N, *out]`` (``None`` when ``T == 0``, or when the outputs are not
            tensors of one shape: any output ``f_loss_t`` takes is trained on, as in
            SpikingJelly).

        Raises:
            TypeError: an argument of the wrong type, ``w_ra`` missing or not a list, ``alpha``
                not a number, a non-scalar loss, an unknown option.
            ValueError: ``alpha <= 0``; ``w_ra`` whose length or shapes do not match the
                optimizer's parameters; ``target_seq`` shorter than ``x_seq``.
            RuntimeError: a parameter received no gradient from the second forward.
        """
        from snn.base import MemoryModule

        _no_options(self.name, options, "alpha=")
        _check_common(model, optimizer, f_loss_t)
        alpha = _check_alpha(alpha)
        parameters = _optimizer_parameters(optimizer)
        w_ra = _check_w_ra(state, parameters)
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1:
            what = f"shape {tuple(x_seq.shape)}" if isinstance(x_seq, torch.Tensor) else type(x_seq).__name__
            raise TypeError(f"x_seq: expected a time-first tensor [T, N, *], got {what}")
        steps = x_seq.shape[0]
        if isinstance(target_seq, torch.Tensor) and target_seq.dim() == 0:
            raise TypeError(
                "target_seq: expected one target per step of x_seq (time on dimension 0), got a 0-dim tensor"
            )
        if not hasattr(target_seq, "__getitem__"):
            raise TypeError(
                f"target_seq: expected a sequence or tensor with one target per step of x_seq, "
                f"got {type(target_seq).__name__}"
            )
        try:
            available = len(target_seq)
        except TypeError:
            available = None
        if available is not None and available < steps:
            raise ValueError(
                f"target_seq: expected at least {steps} steps (as many as x_seq on dimension 0), got {available}"
            )

        previous_gradients: list[Any] = [0.0] * len(parameters)
        memory_modules = tuple(m for m in model.modules() if isinstance(m, MemoryModule))
        total_loss: Any = 0.0
        # None once a step's output is not a tensor of the first one's shape (a dict, a masked
        # selection): FPTT itself only hands the outputs to f_loss_t
        outputs: list[torch.Tensor] | None = []
        for t in range(steps):
            x_t = x_seq[t]
            try:
                target_t = target_seq[t]
            except IndexError:
                raise ValueError(f"target_seq: has no entry for step {t} of {steps}") from None

            optimizer.zero_grad()
            y_t = model(x_t)
            loss = _checked_scalar_loss(f_loss_t(y_t, target_t), t)
            regulariser = alpha / 2.0 * sum(
                F.mse_loss(p, w_ra[i] + previous_gradients[i] / (2.0 * alpha)) for i, p in enumerate(parameters)
            )
            (loss + regulariser).backward()
            optimizer.step()
            _detach_net(model)
            saved_memories = [copy.deepcopy(m._memories) for m in memory_modules]
            # the potentials a neuron with store_v_seq appends are state too (appending makes a
            # new tensor, so keeping the reference keeps the sequence)
            saved_v_seqs = [(m, m.v_seq) for m in memory_modules if hasattr(m, "v_seq")]
            optimizer.zero_grad()

            try:
                if t < steps - 1:
                    loss_again = _checked_scalar_loss(f_loss_t(model(x_t), target_t), t)
                    loss_again.backward()
                    # every gradient is checked before any running average changes
                    for i, p in enumerate(parameters):
                        if p.grad is None:
                            raise RuntimeError(
                                f"optimizer parameter {i} (shape {tuple(p.shape)}) received no gradient from "
                                "f_loss_t; FPTT needs every optimized parameter to take part in the loss"
                            )
                    with torch.no_grad():
                        for i, p in enumerate(parameters):
                            assert p.grad is not None  # checked above
                            previous_gradients[i] = p.grad.detach().clone()
                            w_ra[i] = (w_ra[i] + p) / 2.0 - p.grad / (2.0 * alpha)
            finally:  # the second forward's states and gradients never outlive the step
                optimizer.zero_grad()
                for module, memories in zip(memory_modules, saved_memories):
                    object.__setattr__(module, "_memories", memories)
                for module, v_seq in saved_v_seqs:
                    module.v_seq = v_seq

            total_loss = total_loss + loss.detach()
            spikes = _spikes_of(y_t)
            if outputs is not None:
                if isinstance(spikes, torch.Tensor) and (not outputs or spikes.shape == outputs[0].shape):
                    outputs.append(spikes.detach())
                else:
                    outputs = None

        if steps == 0:
            return torch.zeros(()), None
        return total_loss, None if outputs is None else torch.stack(outputs, dim=0)

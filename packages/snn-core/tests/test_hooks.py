"""Each hook of snn.hookspecs, exercised end to end by a plugin registered for the test.

One test per hook, named ``test_hook_<hook name>`` (``test_docs_meta.py`` checks that every
spec has one): the plugin registers something through the hook, and the test uses it where snn
users would, comparing against an independent computation.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

import snn
from snn import layer, neuron
from snn.learning import OnlineLearner
from snn.models import THRESHOLD_AND_RESET, HyperParameter, ModelParameters, NeuronModel, State, StateValues
from snn.registry import (
    BackendRegistrar,
    LearnerRegistrar,
    LossRegistrar,
    NeuronModelRegistrar,
    StrategyRegistrar,
)


def _plugin(**hooks: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: snn.hookimpl(fn) for name, fn in hooks.items()})


# -- snn_register_neuron_models -----------------------------------------------------------------


def _decay_charge(x: Any, u: StateValues, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": u.v * p.decay + x}


def _decay_reset(h: StateValues, s: Any, p: ModelParameters, ops: Any) -> dict[str, Any]:
    return {"v": p.reset(h.v, s)}


DECAY_IF = NeuronModel(
    name="test_decay_if",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=(HyperParameter("decay", 0.5, "real", "the factor v keeps per step"), *THRESHOLD_AND_RESET),
    charge=_decay_charge,
    reset=_decay_reset,
    description="v = decay * v + x (a test model)",
)


class DecayIFNode(neuron.BaseNode):
    model = DECAY_IF

    def __init__(self, decay: float = 0.5, step_mode: str = "s") -> None:
        super().__init__(step_mode=step_mode)
        self.decay = decay
        self.register_model_states()


def test_hook_snn_register_neuron_models(temporary_plugin: Any) -> None:
    def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
        register(DECAY_IF, node=DecayIFNode)

    registry = temporary_plugin(_plugin(snn_register_neuron_models=snn_register_neuron_models), name="decay")
    assert registry.model("test_decay_if") is DECAY_IF
    assert registry.models["test_decay_if"].provenance.plugin == "decay"
    assert neuron.node_class("test_decay_if") is DecayIFNode
    assert "torch" in registry.backends_serving(DECAY_IF, "multi_step")
    x = torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.875, 1.5]])
    spikes = DecayIFNode(decay=0.5, step_mode="m")(x)  # the torch backend's kernel, from the plan
    v, expected = torch.zeros(2), []
    for x_t in x:  # the model written out: charge, fire (H(0) = 1), hard reset to 0
        h = 0.5 * v + x_t
        s = (h >= 1.0).float()
        v = h * (1.0 - s)
        expected.append(s)
    assert torch.equal(spikes, torch.stack(expected))
    assert spikes.sum() > 0


# -- snn_register_backends ----------------------------------------------------------------------

KERNEL_CALLS: list[Any] = []


def counting_kernel(x_seq: torch.Tensor, states: Any, config: Any, **options: Any) -> Any:
    """A hand-written backend's kernel: the torch backend's, counted."""
    from snn.backends.torch import multi_step

    KERNEL_CALLS.append(config.model.name)
    return multi_step(x_seq, states, config, **options)


def test_hook_snn_register_backends(temporary_plugin: Any) -> None:
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            "counting", {"multi_step": f"{__name__}:counting_kernel"}, models=("lif",), devices=("cpu",),
            dtypes=(torch.float32,), surrogates=("Sigmoid",), probe=lambda: None,
        )

    registry = temporary_plugin(_plugin(snn_register_backends=snn_register_backends), name="counting")
    info = registry.backend("counting")
    assert info.provenance.plugin == "counting" and info.models == frozenset({"lif"})
    KERNEL_CALLS.clear()
    x = torch.rand(5, 3) * 2
    spikes = neuron.LIFNode(step_mode="m", backend="counting")(x)
    assert KERNEL_CALLS == ["lif"]
    assert torch.equal(spikes, neuron.LIFNode(step_mode="m")(x))


# -- snn_register_forward_strategies ------------------------------------------------------------


def reversed_time(module: nn.Module, x_seq: torch.Tensor, **options: Any) -> torch.Tensor:
    """The module over the sequence from its last step to its first (outputs in that order)."""
    return torch.stack([module(x) for x in x_seq.flip(0)])


def test_hook_snn_register_forward_strategies(temporary_plugin: Any) -> None:
    def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
        register("reversed_time", reversed_time, description="last step first")

    registry = temporary_plugin(_plugin(snn_register_forward_strategies=snn_register_forward_strategies), name="rev")
    assert registry.strategy("reversed_time").provenance.plugin == "rev"
    x = torch.tensor([[2.0], [0.0], [0.0], [0.75]])
    out = layer.MultiStepContainer(neuron.IFNode(), strategy="reversed_time")(x)
    # IF fed 0.75, 0, 0, 2 (reversed): charge 0.75, 0.75, 0.75, 2.75 -> a spike at the last only
    assert torch.equal(out.flatten(), torch.tensor([0.0, 0.0, 0.0, 1.0]))


# -- snn_register_losses ------------------------------------------------------------------------


def last_step_cross_entropy(y_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the last step's outputs."""
    return nn.functional.cross_entropy(y_seq[-1], target)


def test_hook_snn_register_losses(temporary_plugin: Any) -> None:
    from snn.train.loop import resolve_loss

    def snn_register_losses(register: LossRegistrar) -> None:
        register("last_step_ce", last_step_cross_entropy, signature="sequence_classification")

    registry = temporary_plugin(_plugin(snn_register_losses=snn_register_losses), name="laststep")
    assert registry.loss("last_step_ce").metadata == {"signature": "sequence_classification"}
    loss = resolve_loss("last_step_ce")  # what snn train --loss last_step_ce uses
    y_seq = torch.tensor([[[5.0, 0.0]], [[0.0, 1.0]]])
    expected = torch.log(1.0 + torch.exp(torch.tensor(-1.0)))  # -log softmax([0, 1])[1]
    torch.testing.assert_close(loss(y_seq, torch.tensor([1])), expected)


# -- snn_register_online_learners ---------------------------------------------------------------


class SumLearner(OnlineLearner):
    """Sums the per-step losses; one optimizer step per sequence."""

    time_dim = 0

    def train_sequence(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x_seq: torch.Tensor, target_seq: Any,
        f_loss_t: Any, state: Any = None, **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        optimizer.zero_grad()
        outputs = [model(x_t) for x_t in x_seq]
        loss = sum(f_loss_t(y_t, t_t) for y_t, t_t in zip(outputs, target_seq))
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        optimizer.step()
        return loss.detach(), torch.stack(outputs).detach()


def test_hook_snn_register_online_learners(temporary_plugin: Any) -> None:
    from snn.train.loop import resolve_learner

    def snn_register_online_learners(register: LearnerRegistrar) -> None:
        register("sum_steps", SumLearner(), description="one step per sequence")

    registry = temporary_plugin(_plugin(snn_register_online_learners=snn_register_online_learners), name="sum")
    assert registry.learner("sum_steps").provenance.plugin == "sum"
    learner = resolve_learner("sum_steps")  # what snn train --learner sum_steps uses
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x_seq, target_seq = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    loss, y_seq = learner.train_sequence(model, optimizer, x_seq, target_seq, nn.functional.mse_loss)
    # three steps of (w * 1 - 0)^2 with w = 1: loss 3, gradient 2 per step, one SGD step
    assert float(loss) == 3.0 and y_seq is not None and y_seq.shape == (3, 1, 1)
    # w - lr * 6 in float32 (atol: SGD may fuse the multiply-add and round once)
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[0.4]]), rtol=0, atol=1e-7)

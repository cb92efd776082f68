"""Backward paths that the built-in models and the conformance suite's sizes do not take, on
every backend that runs here, against a float64 autograd loop of the same description
(:func:`snn.models.autograd_step`).

- a learnable gain on the input beside a subtracted term (``v - 0.3 sigmoid(v) + x sigmoid(w)``),
  and under a ``relu`` that is off for some steps: the plan differentiates ``w`` as
  ``(h - rest) g'(w) / g(w)``, whose ``rest`` must keep its signs and whose ``relu`` is off at 0;
- a learnable that only a reset reads, with only that learnable requiring a gradient;
- two-state models with only one initial state requiring a gradient;
- a potential exactly on the threshold at the step before another, for the models whose
  backward recomputes the previous state from the saved charge (``H(0) = 1`` there too);
- sequences longer than the 16 steps after which snn-cpp moves learnable sums into ``double``;
- a coefficient that is infinite at an input of 0 with a width that leaves a partial block
  (Triton pads it with zeros: the padding must not reach the learnable's sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from snn import surrogate
from snn.models import THRESHOLD_AND_RESET, NeuronModel, State, autograd_step
from snn.neuron import node_class
from snn.plugins import get_registry

NEGATIVE_REST = NeuronModel(
    name="test_negative_rest", states=(State("v", "v_reset"),), hyperparameters=THRESHOLD_AND_RESET,
    learnables=("w",), charge=lambda x, u, p, ops: {"v": u.v - 0.3 * ops.sigmoid(u.v) + x * ops.sigmoid(p.w)},
)
RECTIFIED_GAIN = NeuronModel(
    name="test_rectified_gain", states=(State("v", "v_reset"),), hyperparameters=THRESHOLD_AND_RESET,
    learnables=("w",), charge=lambda x, u, p, ops: {"v": ops.relu(u.v * 0.5 + x * ops.sigmoid(p.w))},
)
RESET_ONLY_LEARNABLE = NeuronModel(
    name="test_reset_only_learnable", states=(State("v", "v_reset"), State("a", 0.5)),
    hyperparameters=THRESHOLD_AND_RESET, learnables=("b",),
    charge=lambda x, u, p, ops: {"v": u.v * 0.5 + x, "a": u.a * 0.5},
    reset=lambda h, s, p, ops: {"v": p.reset(h.v, s), "a": h.a * p.b},
    detached_in_reset=("v",),
)
LOG_INPUT = NeuronModel(
    name="test_log_input", states=(State("v", "v_reset"),), hyperparameters=THRESHOLD_AND_RESET,
    learnables=("k",), charge=lambda x, u, p, ops: {"v": u.v * 0.5 + p.k * ops.log(ops.abs(x))},
)


def _config(model: NeuronModel) -> Any:
    return model.config(surrogate.Sigmoid().spec)


def _built_in(name: str, **hyper: Any) -> Any:
    return node_class(name)(step_mode="m", **hyper).neuron_config()


def _kernel_or_skip(backend: str, config: Any) -> Any:
    registry = get_registry()
    if not registry.backend(backend).serves_config(config):
        pytest.skip(f"{backend} does not serve the model {config.model.name!r}")
    return registry.kernel(backend, "multi_step")


def _reference(x: torch.Tensor, states: Sequence[torch.Tensor], config: Any, learnables: Sequence[torch.Tensor]
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    spec = config.surrogate
    fire = (spec.cls or surrogate.SURROGATES[spec.name])(**spec.kwargs)
    names = config.model.state_names
    current = dict(zip(names, states))
    params = dict(zip(config.model.learnables, learnables))
    spikes = []
    for t in range(x.shape[0]):
        spike, current = autograd_step(config, x[t], current, params, fire)
        spikes.append(spike)
    return torch.stack(spikes), tuple(current[n] for n in names)


def _compare(kernel: Any, config: Any, x: torch.Tensor, states: Sequence[torch.Tensor],
             learnables: Sequence[torch.Tensor], wanted: Sequence[str], backend: str, device: str) -> None:
    """Spikes, last states and the gradients of the leaves named in ``wanted`` (``"x"``, ``"u0"``,
    ``"u1"``, ``"p0"``, ...) of a weighted sum of spikes and last states. A backend with float64
    kernels runs in float64 against the reference loop; one without (Triton) in float32 against
    the torch backend in float32, which the float64 case checks against the reference."""
    generator = torch.Generator().manual_seed(11)
    weights = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    state_weights = [torch.randn(s.shape, generator=generator, dtype=torch.float64) for s in states]
    names = ["x", *(f"u{i}" for i in range(len(states))), *(f"p{i}" for i in range(len(learnables)))]
    double = torch.float64 in get_registry().backend(backend).dtypes
    dtype = torch.float64 if double else torch.float32

    def run(on: str, run_kernel: Any) -> list[Any]:
        leaves = [t.detach().to(on, dtype).requires_grad_(name in wanted)
                  for name, t in zip(names, [x, *states, *learnables])]
        xs, st, ps = leaves[0], leaves[1 : 1 + len(states)], leaves[1 + len(states) :]
        if run_kernel is None:
            spikes, last = _reference(xs, st, config, ps)
        else:
            spikes, last, _ = run_kernel(xs, tuple(st), config, learnables=tuple(ps))
        loss = (spikes * weights.to(on, dtype)).sum() + sum((v * w.to(on, dtype)).sum() for v, w in zip(last, state_weights))
        requested = [leaf for name, leaf in zip(names, leaves) if name in wanted]
        grads = torch.autograd.grad(loss, requested, allow_unused=True)
        return [spikes.detach().cpu(), *[v.detach().cpu() for v in last], *[g.cpu() if g is not None else None for g in grads]]

    got = run(device, kernel)
    want = run("cpu", None if double else get_registry().kernel("torch", "multi_step"))
    assert torch.equal(got[0], want[0]), "spikes differ"
    assert 0 < float(want[0].sum()) < want[0].numel(), "a case where every neuron fires, or none, tests less"
    rtol, atol = (1e-9, 1e-12) if double else (1e-4, 1e-5)
    for name, a, b in zip(["last states"] * len(states) + list(wanted), got[1:], want[1:]):
        assert a is not None and b is not None, name
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("model", [NEGATIVE_REST, RECTIFIED_GAIN], ids=lambda m: m.name)
def test_a_learnable_input_gain_beside_other_terms(kernel_backend_device: tuple[str, str], model: NeuronModel) -> None:
    backend, device = kernel_backend_device
    config = _config(model)
    kernel = _kernel_or_skip(backend, config)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(6, 9, generator=generator, dtype=torch.float64) * 1.5  # negative too: the relu is off
    v0 = torch.rand(9, generator=generator, dtype=torch.float64) - 0.5
    w = torch.tensor(0.4, dtype=torch.float64)
    _compare(kernel, config, x, [v0], [w], ["x", "u0", "p0"], backend, device)


def test_a_learnable_only_a_reset_reads(kernel_backend_device: tuple[str, str]) -> None:
    backend, device = kernel_backend_device
    config = _config(RESET_ONLY_LEARNABLE)
    kernel = _kernel_or_skip(backend, config)
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(5, 7, generator=generator, dtype=torch.float64) * 1.4
    states = [torch.zeros(7, dtype=torch.float64), torch.rand(7, generator=generator, dtype=torch.float64)]
    b = torch.tensor(0.8, dtype=torch.float64)
    _compare(kernel, config, x, states, [b], ["p0"], backend, device)


@pytest.mark.parametrize("name", ["cubalif", "izhikevich"])
@pytest.mark.parametrize("state", [0, 1])
def test_one_initial_state_of_two_requires_a_gradient(kernel_backend_device: tuple[str, str], name: str, state: int
                                                      ) -> None:
    backend, device = kernel_backend_device
    config = _built_in(name)
    kernel = _kernel_or_skip(backend, config)
    generator = torch.Generator().manual_seed(7)
    scale = 0.2 if name == "cubalif" else 3.0  # about a third of the neuron-steps fire
    x = torch.rand(6, 8, generator=generator, dtype=torch.float64) * scale
    states = [torch.rand(8, generator=generator, dtype=torch.float64) * 0.5 for _ in config.model.state_names]
    _compare(kernel, config, x, states, [], [f"u{state}"], backend, device)


#: model -> (hyper-parameters, initial potential, input) whose first charge is exactly the
#: threshold 1 in any order of operations (dyadic values; PLIF's w = 0 decays by 1/2, EIF's
#: exponent is 0 at v = theta_rh, the quadratic term is 0 at v = v_c)
TIES: dict[str, tuple[dict[str, float], float, float]] = {
    "plif": ({}, 0.0, 2.0),
    "qif": ({}, 0.8, 0.4),
    "eif": ({"theta_rh": 0.5}, 0.5, 0.5),
    "izhikevich": ({}, 0.8, 0.4),
}


@pytest.mark.parametrize("name", sorted(TIES))
def test_a_potential_on_the_threshold_the_step_before(kernel_backend_device: tuple[str, str], name: str) -> None:
    """The backward pass recomputes the previous state from the saved charge and its spike:
    at ``h = threshold`` exactly that spike is 1 (``H(0) = 1``), as in the forward pass."""
    from snn.models import evaluate_charge

    backend, device = kernel_backend_device
    hyper, v0, x0 = TIES[name]
    config = _built_in(name, **hyper)
    kernel = _kernel_or_skip(backend, config)
    states = [torch.full((3,), v0, dtype=torch.float64)] + [torch.zeros(3, dtype=torch.float64)] * (len(config.model.state_names) - 1)
    learnables = [torch.tensor(0.0, dtype=torch.float64)] if name == "plif" else []
    first = torch.tensor([x0, 0.3 * x0, 0.3 * x0], dtype=torch.float64)
    charged = evaluate_charge(config.model, config.hyper, first, dict(zip(config.model.state_names, states)),
                              dict(zip(config.model.learnables, learnables)))
    assert float(charged["v"][0]) == 1.0 == config.hyper["v_threshold"]  # the tie this test is about
    x = torch.stack([first, torch.full((3,), 0.7, dtype=torch.float64), torch.full((3,), 0.9, dtype=torch.float64)])
    wanted = ["x", *(f"u{i}" for i in range(len(states))), *(f"p{i}" for i in range(len(learnables)))]
    _compare(kernel, config, x, states, learnables, wanted, backend, device)


@pytest.mark.parametrize("name", ["plif", "klif"])
def test_learnable_gradients_of_long_sequences(kernel_backend_device: tuple[str, str], name: str) -> None:
    """37 steps: more than two of the 16-step blocks after which snn-cpp adds a learnable's
    partial sums into ``double``, and not a multiple of 16."""
    backend, device = kernel_backend_device
    config = _built_in(name)
    kernel = _kernel_or_skip(backend, config)
    generator = torch.Generator().manual_seed(13)
    x = torch.rand(37, 50, generator=generator, dtype=torch.float64) * 1.5
    v0 = torch.zeros(50, dtype=torch.float64)
    learnable = torch.tensor(0.3 if name == "plif" else 2.0, dtype=torch.float64)  # KLIF's k: some fire
    _compare(kernel, config, x, [v0], [learnable], ["x", "u0", "p0"], backend, device)


def test_padding_lanes_stay_out_of_a_learnables_sum(kernel_backend_device: tuple[str, str]) -> None:
    """``0.5 v + k log|x|``: the coefficient of ``k`` is infinite at ``x = 0``, the value Triton
    gives the lanes past the end of a partial block (37 neurons)."""
    backend, device = kernel_backend_device
    config = _config(LOG_INPUT)
    kernel = _kernel_or_skip(backend, config)
    generator = torch.Generator().manual_seed(17)
    x = torch.rand(4, 37, generator=generator, dtype=torch.float64) * 20.0 + 0.5
    v0 = torch.zeros(37, dtype=torch.float64)
    k = torch.tensor(0.4, dtype=torch.float64)
    _compare(kernel, config, x, [v0], [k], ["x", "u0", "p0"], backend, device)

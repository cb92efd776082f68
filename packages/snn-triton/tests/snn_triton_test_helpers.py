"""Shared helpers of the snn-triton tests (imported by name: conftest puts this folder on sys.path).

References: the torch backend (:func:`snn.backends.torch.multi_step`, same contract, its own
compiled programs) and :func:`float64_loop`, a plain float64 loop of
:func:`snn.models.autograd_step` firing through the surrogate module's own autograd, with
autograd deriving every gradient (nothing of the generated kernels is shared with it).

Synthetic models (registered by :data:`SYNTHETIC_PLUGIN` for the tests that need them) exercise
the generator beyond the built-in models:

- ``twostate``: a current-based LIF with two states (``c`` charged first, ``v`` reading ``c``'s
  charge), a learnable ``a`` in the charge and in the reset of ``c`` (so ``reset_p`` and a
  second state's ``reset_s`` are used); ``detach_reset`` detaches only ``v``'s reset;
- ``expgain``: ``h = v leak + x exp(-|v| gain)``: the backward reads ``x`` (saved) and the
  recomputed previous state;
- ``clipin``: ``h = v + max(x, -0.5) k + min(v, 0.3) / 10`` with a learnable ``k``: the input is
  saved (:attr:`~snn.models.KernelPlan.save_input`), ``minimum`` / ``maximum`` carry NaN.
"""

from __future__ import annotations

import types
from typing import Any

import torch

import snn
from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronConfig, NeuronModel, State, autograd_step
from snn.surrogate import SURROGATES, Sigmoid, surrogate_class

__all__ = [
    "DEVICE",
    "SYNTHETIC_MODELS",
    "all_model_names",
    "SYNTHETIC_PLUGIN",
    "RESETS",
    "config_variants",
    "float64_loop",
    "make_inputs",
    "outputs_and_gradients",
    "assert_close_outputs",
    "surrogate_spec",
]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

#: Reset variants of a model with ``v_reset``: hard at 0, hard at -0.3, soft.
RESETS: dict[str, float | None] = {"hard": 0.0, "hardneg": -0.3, "soft": None}


def _twostate_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    c = u.c - u.c / p.tau_syn + x
    return {"c": c, "v": u.v + (c - (u.v - p.reset_potential)) * ops.sigmoid(p.a)}


def _twostate_reset(h: Any, s: Any, p: Any, ops: Any) -> dict[str, Any]:
    return {"v": p.reset(h.v, s), "c": h.c * (1.0 - s * ops.sigmoid(p.a))}


def _expgain_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    return {"v": u.v * p.leak + x * ops.exp(-ops.abs(u.v) * p.gain)}


def _clipin_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    return {"v": u.v + ops.maximum(x, -0.5) * p.k + ops.minimum(u.v, 0.3) * 0.1}


TWOSTATE = NeuronModel(
    name="twostate",
    states=(State("v", "v_reset"), State("c", 0.0)),
    hyperparameters=(HyperParameter("tau_syn", 3.0, "time_constant"), *THRESHOLD_AND_RESET),
    learnables=("a",),
    charge=_twostate_charge,
    reset=_twostate_reset,
    description="test: two-state current-based LIF with a learnable decay and current reset",
    examples=({"tau_syn": 1.5, "v_reset": None, "v_threshold": 0.6},),
)

EXPGAIN = NeuronModel(
    name="expgain",
    states=(State("v", "v_reset"),),
    hyperparameters=(
        HyperParameter("leak", 0.9, "positive"), HyperParameter("gain", 0.2, "real"), *THRESHOLD_AND_RESET,
    ),
    charge=_expgain_charge,
    description="test: input gain depending on the potential (input read in backward)",
    examples=({"gain": -0.3, "leak": 0.5},),
)

CLIPIN = NeuronModel(
    name="clipin",
    states=(State("v", "v_reset"),),
    hyperparameters=THRESHOLD_AND_RESET,
    learnables=("k",),
    charge=_clipin_charge,
    description="test: clipped input with a learnable gain (input saved in backward)",
)

def _delays_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    # a and d copy the previous potential (a before v in the state order, d after it): the
    # kernel must read every previous state before it writes any new one, forward and backward
    return {"a": u.v, "v": 0.5 * u.v + x + 0.5 * u.a - 0.25 * u.d, "d": u.v}


DELAYS = NeuronModel(
    name="delays",
    states=(State("a", 0.0), State("v", "v_reset"), State("d", 0.0)),
    hyperparameters=THRESHOLD_AND_RESET,
    charge=_delays_charge,
    description="test: states that are other states' previous values",
)

#: The synthetic models, by name.
SYNTHETIC_MODELS = {m.name: m for m in (TWOSTATE, EXPGAIN, CLIPIN, DELAYS)}


@snn.hookimpl
def _register_synthetic(register: Any) -> None:
    for model in SYNTHETIC_MODELS.values():
        register(model)


#: A plugin object registering the synthetic models (use with ``snn.plugins.temporary_plugin``).
SYNTHETIC_PLUGIN = types.SimpleNamespace(snn_register_neuron_models=_register_synthetic)


def all_model_names() -> list[str]:
    """Every installed model (built-in and plugins', so models added later too) plus the
    synthetic test models (register those with the ``synthetic_models`` fixture)."""
    from snn.plugins import get_registry

    return sorted(get_registry().models) + sorted(SYNTHETIC_MODELS)


def config_variants(model: NeuronModel, surrogate: Any = None) -> list[tuple[str, NeuronConfig]]:
    """``(id, config)``: the reset variants x ``detach_reset`` (models with ``v_reset``) and each
    of the model's examples with and without ``detach_reset``."""
    spec = (surrogate or Sigmoid()).spec
    out = []
    kinds = {h.name: h.kind for h in model.hyperparameters}
    if "v_reset" not in kinds:
        resets: dict[str, Any] = {"default": "keep"}
    elif kinds["v_reset"] == "optional_real":
        resets = dict(RESETS)
    else:  # a model whose reset potential must be a number
        resets = {k: v for k, v in RESETS.items() if v is not None}
    for name, v_reset in resets.items():
        hyper = {} if v_reset == "keep" else {"v_reset": v_reset}
        for detach in (False, True):
            out.append((f"{name}-{'detach' if detach else 'nodetach'}", model.config(spec, detach, **hyper)))
    for index, example in enumerate(model.examples):
        for detach in (False, True):
            out.append((f"example{index}-{'detach' if detach else 'nodetach'}", model.config(spec, detach, **example)))
    return out


def make_inputs(
    config: NeuronConfig, shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32,
    device: str = DEVICE,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Seeded ``(x, states, learnables)`` (no grad): ``x`` around 0.45, states in [-0.3, 0.5),
    learnables in [0.5, 1.5)."""
    gen = torch.Generator().manual_seed(seed)
    model = config.model
    x = (torch.randn(shape, generator=gen) * 0.9 + 0.45).to(device=device, dtype=dtype)
    states = [(torch.rand(shape[1:], generator=gen) * 0.8 - 0.3).to(device=device, dtype=dtype) for _ in model.states]
    learnables = [(torch.rand((), generator=gen) + 0.5).to(device=device) for _ in model.learnables]
    return x, states, learnables


def float64_loop(
    config: NeuronConfig, x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor], store: bool = True,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
    """The model over ``x`` step by step with :func:`snn.models.autograd_step` (float64 leaves in,
    autograd records everything); the spike fires through the surrogate module."""
    model = config.model
    fire = surrogate_class(config.surrogate)(**config.surrogate.kwargs)
    current = dict(zip(model.state_names, states))
    params = dict(zip(model.learnables, learnables))
    spikes, seqs = [], [[] for _ in states]
    for t in range(x.shape[0]):
        spike, current = autograd_step(config, x[t], current, params, fire)
        spikes.append(spike)
        for seq, name in zip(seqs, model.state_names):
            seq.append(current[name])
    last = tuple(current[name] for name in model.state_names)
    return torch.stack(spikes), last, (tuple(torch.stack(s) for s in seqs) if store else None)


def outputs_and_gradients(
    kernel: Any,
    config: NeuronConfig,
    x: torch.Tensor,
    states: list[torch.Tensor],
    learnables: list[torch.Tensor],
    upstream: dict[str, Any],
    given: tuple[str, ...] = ("spikes", "last", "seqs"),
) -> list[Any]:
    """Run ``kernel`` on fresh leaves and return ``[spikes, last..., seqs..., grad x, grad
    states..., grad learnables...]`` (CPU, detached); only the outputs named in ``given``
    (``"spikes"``, ``"last"``, ``"seqs"``, or ``"last:<i>"`` / ``"seqs:<i>"`` for one state)
    receive the gradients ``upstream`` holds for them."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, *states, *learnables)]
    m = len(states)
    lx, ls, lp = leaves[0], leaves[1 : 1 + m], leaves[1 + m :]
    spikes, last, seqs = kernel(lx, tuple(ls), config, learnables=tuple(lp), store_state_seqs=True)
    outputs, grads = [], []
    for name in given:
        kind, _, index = name.partition(":")
        if kind == "spikes":
            outputs.append(spikes)
            grads.append(upstream["spikes"])
            continue
        chosen = range(m) if not index else (int(index),)
        for i in chosen:
            outputs.append((last if kind == "last" else seqs)[i])
            grads.append(upstream[kind][i])
    found = torch.autograd.grad(outputs, leaves, [g.to(device=o.device, dtype=o.dtype) for o, g in zip(outputs, grads)],
                                allow_unused=True)
    found = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(found, leaves)]
    return [t.detach().cpu() for t in (spikes, *last, *seqs, *found)]


def assert_close_outputs(got: list[Any], want: list[Any], labels: list[str], rtol: float, atol: float) -> None:
    """Spikes (first) equal; the rest close with NaN and infinities at the same places."""
    assert torch.equal(got[0].double(), want[0].double()), f"spikes differ at {(got[0] != want[0]).nonzero()[:5].tolist()}"
    for label, a, b in zip(labels[1:], got[1:], want[1:]):
        a, b = a.double(), b.double()
        assert torch.equal(a.isnan(), b.isnan()), f"{label}: NaN at different places\n{a}\n{b}"
        assert torch.equal(a.isinf() & (a > 0), b.isinf() & (b > 0)), f"{label}: +inf at different places"
        assert torch.equal(a.isinf() & (a < 0), b.isinf() & (b < 0)), f"{label}: -inf at different places"
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m, n=label: f"{n}: {m}")


def surrogate_spec(name: str) -> Any:
    """The default spec of the :mod:`snn.surrogate` class ``name``."""
    return SURROGATES[name]().spec

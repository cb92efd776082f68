"""Shared pieces of the snn-cpp tests: a synthetic model and comparison helpers."""

from __future__ import annotations

import math
from typing import Any

import torch

from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronModel, State

__all__ = [
    "TWO_STATE_MODEL",
    "RELU_MODEL",
    "POWER_MODEL",
    "assert_same_nonfinite",
    "autograd_multi_step",
    "plan_reference",
    "ALL_OUTPUTS",
    "loss_weights",
    "outputs_and_gradients",
    "configurations",
    "random_inputs",
    "charged_fire_values",
    "inputs_without_near_ties",
]


def _two_state_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    # adaptation a decays by sigmoid(w) and grows with the positive part of v; v leaks towards
    # the reset potential and is pushed down by the charged adaptation (a subtree of h_v)
    a = u.a * ops.sigmoid(p.w) + p.gain * ops.maximum(u.v, 0.0)
    v = u.v + (x - (u.v - p.reset_potential) - a) / p.tau
    return {"v": v, "a": a}


def _two_state_reset(h: Any, s: Any, p: Any, ops: Any) -> dict[str, Any]:
    # the standard reset of v, and a jump of the adaptation by the learnable b per spike
    return {"v": p.reset(h.v, s), "a": h.a + s * p.b}


#: Two states, two learnable parameters (one in the charge, one in the reset).
TWO_STATE_MODEL = NeuronModel(
    name="cpptest_adaptive",
    states=(State("v", "v_reset", "membrane potential"), State("a", 0.0, "adaptation")),
    hyperparameters=(
        HyperParameter("tau", 2.0, "time_constant", "membrane time constant"),
        HyperParameter("gain", 0.05, "real", "adaptation per unit of positive potential"),
        *THRESHOLD_AND_RESET,
    ),
    learnables=("w", "b"),
    charge=_two_state_charge,
    reset=_two_state_reset,
    detached_in_reset=("v", "a"),
    description="test model: LIF with a learnable adaptation current",
    examples=({"v_reset": None}, {"gain": 0.0, "tau": 3.0}),
)


def _relu_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    # rectified input, a leak, and exp / sqrt / abs terms: more operations to render
    leak = math.exp(-1.0 / p.tau)
    return {"v": u.v * leak + ops.relu(x) - 0.1 * ops.sqrt(ops.abs(u.v) + 1.0) + 0.05 * ops.exp(-ops.abs(x))}


#: One state, relu / exp / sqrt / abs in the charge (the torch backend's compiled programs do
#: not run relu yet, so this model is checked against the autograd reference only).
RELU_MODEL = NeuronModel(
    name="cpptest_relu",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=(HyperParameter("tau", 2.0, "time_constant", "leak time constant"), *THRESHOLD_AND_RESET),
    charge=_relu_charge,
    description="test model: rectified input, exponential leak",
    examples=({"v_reset": None},),
)


def _power_charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
    # odd and even integer powers above 3 (rendered as C's powf, which keeps the sign) of
    # quantities that are often negative; the clamp keeps the powers of v bounded
    c = ops.minimum(ops.maximum(u.v, -1.5), 1.5)
    return {"v": 0.6 * u.v + x + 0.05 * c**5 - 0.02 * c**6 + 0.01 * (x - 1.0) ** 7}


#: One state, integer powers of negative numbers in the charge (and, differentiated, in the backward).
POWER_MODEL = NeuronModel(
    name="cpptest_power",
    states=(State("v", "v_reset", "membrane potential"),),
    hyperparameters=THRESHOLD_AND_RESET,
    charge=_power_charge,
    description="test model: odd and even powers of the potential and of the input",
    examples=({"v_reset": None},),
)


#: Every output of a kernel, for :func:`outputs_and_gradients`.
ALL_OUTPUTS = frozenset({"spikes", "last", "seqs"})


def loss_weights(x: torch.Tensor, n_states: int, store: bool, seed: int = 7) -> dict[str, list[torch.Tensor]]:
    """The random weights of :func:`outputs_and_gradients`'s loss, by output group."""
    gen = torch.Generator().manual_seed(seed)

    def draw(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(x.dtype)

    return {
        "spikes": [draw(x.shape)],
        "last": [draw(x.shape[1:]) for _ in range(n_states)],
        "seqs": [draw(x.shape) for _ in range(n_states)] if store else [],
    }


def outputs_and_gradients(
    kernel: Any, x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor], config: Any,
    *, store: bool = True, use: frozenset[str] = ALL_OUTPUTS, seed: int = 7,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Run ``kernel`` on fresh leaves and return its outputs and the gradients of a weighted sum
    (:func:`loss_weights`) of the outputs named in ``use`` (``"spikes"``, ``"last"``,
    ``"seqs"``) with respect to ``x``, the states and the learnables (``None`` where no
    gradient arrives)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *states, *learnables)]
    lx, lstates, lparams = leaves[0], leaves[1 : 1 + len(states)], leaves[1 + len(states) :]
    spikes, last, seqs = kernel(lx, tuple(lstates), config, learnables=tuple(lparams), store_state_seqs=store)
    groups = {"spikes": [spikes], "last": list(last), "seqs": list(seqs or ())}
    weights = loss_weights(x, len(states), store, seed)
    loss = spikes.new_zeros(())
    for group in ("spikes", "last", "seqs"):
        if group in use:
            for out, weight in zip(groups[group], weights[group]):
                loss = loss + (out * weight).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else [None] * len(leaves)
    outputs = [spikes, *last, *(seqs or ())]
    return [o.detach() for o in outputs], list(grads)


def autograd_multi_step(
    x_seq: torch.Tensor, states: tuple[torch.Tensor, ...], config: Any, *,
    learnables: tuple[torch.Tensor, ...] = (), store_state_seqs: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
    """The model description run step by step with torch autograd (:func:`snn.models.autograd_step`
    and the surrogate's own class): an independent reference with the kernel's signature."""
    from snn.models import autograd_step
    from snn.surrogate import SURROGATES

    spec = config.surrogate
    fire = (spec.cls or SURROGATES[spec.name])(**spec.kwargs)
    model = config.model
    current = dict(zip(model.state_names, states))
    params = dict(zip(model.learnables, learnables))
    spikes, seqs = [], [[] for _ in states]
    for t in range(x_seq.shape[0]):
        spike, current = autograd_step(config, x_seq[t], current, params, fire)
        spikes.append(spike)
        for seq, name in zip(seqs, model.state_names):
            seq.append(current[name])
    last = tuple(current[name] for name in model.state_names)
    return torch.stack(spikes), last, (tuple(torch.stack(q) for q in seqs) if store_state_seqs else None)


def plan_reference(
    config: Any, x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor],
    grad_spikes: torch.Tensor | None, grad_last: list[torch.Tensor | None], grad_seqs: list[torch.Tensor | None],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The kernel plan evaluated literally with torch, step by step (:func:`snn.expr.evaluate`):
    the forward pass and the documented backward recursion, skipping the terms of absent
    incoming gradients and of structurally zero coefficients (the contract's NaN semantics).

    Returns:
        ``([spikes, *last states, *state sequences], [grad_x, *grad states, *grad learnables])``.
    """
    from snn.expr import evaluate
    from snn.models import kernel_plan

    plan = kernel_plan(config)
    m, fire, theta = len(plan.states), plan.fire_index, plan.threshold
    hn = [f"h_{n}" for n in plan.states]
    un = [f"u_{n}" for n in plan.states]
    params = {f"p_{k}": p.reshape(()) for k, p in zip(plan.learnables, learnables)}
    steps = x.shape[0]
    u, envs, spikes, seqs = list(states), [], [], []
    for t in range(steps):
        env = {**params, "x": x[t], **dict(zip(un, u))}
        h = [evaluate(plan.charge[i], env) for i in range(m)]
        s = (h[fire] >= theta).to(x.dtype)
        env.update(dict(zip(hn, h)), s=s, z=h[fire] - theta)
        u = [torch.as_tensor(evaluate(plan.reset[i], env), dtype=x.dtype).expand_as(x[t]) for i in range(m)]
        envs.append(env)
        spikes.append(s)
        seqs.append(u)

    def ev(expr: Any, env: dict[str, Any]) -> Any:
        return evaluate(expr, env)

    g_state: list[Any] = list(grad_last)
    grad_x = torch.zeros_like(x)
    grad_p = [torch.zeros((), dtype=torch.float64) for _ in plan.learnables]
    for t in range(steps - 1, -1, -1):
        env = envs[t]
        g_state = [g if q is None else (q[t] if g is None else g + q[t]) for g, q in zip(g_state, grad_seqs)]
        sg = ev(plan.surrogate, env)
        total = None if grad_spikes is None else grad_spikes[t]
        for i in range(m):
            if g_state[i] is not None and plan.reset_s[i] is not None:
                term = g_state[i] * ev(plan.reset_s[i], env)
                total = term if total is None else total + term
        g_h = []
        for j in range(m):
            value = torch.zeros_like(x[t])
            for i in range(m):
                if g_state[i] is not None and plan.reset_h[i][j] is not None:
                    value = value + g_state[i] * ev(plan.reset_h[i][j], env)
            if j == fire and total is not None:
                value = value + total * sg
            g_h.append(value)
        gx = torch.zeros_like(x[t])
        for j in range(m):
            if plan.charge_x[j] is not None:
                gx = gx + g_h[j] * ev(plan.charge_x[j], env)
        grad_x[t] = gx
        for k in range(len(plan.learnables)):
            for j in range(m):
                if plan.charge_p[j][k] is not None:
                    grad_p[k] = grad_p[k] + (g_h[j] * ev(plan.charge_p[j][k], env)).double().sum()
            for i in range(m):
                if g_state[i] is not None and plan.reset_p[i][k] is not None:
                    grad_p[k] = grad_p[k] + (g_state[i] * ev(plan.reset_p[i][k], env)).double().sum()
        new_state: list[Any] = []
        for i in range(m):
            value = None
            for j in range(m):
                if plan.charge_u[j][i] is not None:
                    term = g_h[j] * ev(plan.charge_u[j][i], env)
                    value = term if value is None else value + term
            new_state.append(value)
        g_state = new_state
    grad_states = [torch.zeros_like(s) if g is None else g for g, s in zip(g_state, states)]
    outputs = [torch.stack(spikes), *seqs[-1], *(torch.stack([q[i] for q in seqs]) for i in range(m))]
    grads = [grad_x, *grad_states, *(g.to(x.dtype).reshape(p.shape) for g, p in zip(grad_p, learnables))]
    return outputs, grads


def assert_same_nonfinite(got: torch.Tensor, want: torch.Tensor, what: str, rtol: float, atol: float) -> None:
    """NaN where ``want`` is NaN, the same infinities, finite values within tolerance."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: NaN positions differ"
    assert torch.equal(torch.isposinf(got), torch.isposinf(want)), f"{what}: +inf positions differ"
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), f"{what}: -inf positions differ"
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite], want[finite], rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def configurations(model: Any, surrogate: Any) -> list[tuple[str, Any]]:
    """``(id, config)`` for a model: defaults x reset variants x ``detach_reset``, and its examples."""
    resets: dict[str, Any] = {"model": "keep"}
    if "v_reset" in model.hyperparameter_names:
        resets = {"hard0": 0.0, "hardneg": -0.3, "soft": None}
    out = []
    for reset_name, v_reset in resets.items():
        for detach in (False, True):
            hyper = {} if v_reset == "keep" else {"v_reset": v_reset}
            out.append((f"{model.name}-{reset_name}-{'detach' if detach else 'nodetach'}",
                        model.config(surrogate, detach, **hyper)))
    for index, example in enumerate(model.examples):
        out.append((f"{model.name}-example{index}", model.config(surrogate, False, **example)))
    return out


def random_inputs(
    config: Any, shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Seeded input ``[T, *]`` around the threshold, initial states and learnable parameters."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 0.9 + 0.45).to(dtype)
    states = [(torch.rand(shape[1:], generator=gen, dtype=torch.float64) * 0.8 - 0.3).to(dtype)
              for _ in config.model.states]
    learnables = [(torch.rand((), generator=gen, dtype=torch.float64) + 0.5).to(dtype) for _ in config.model.learnables]
    return x, states, learnables


def charged_fire_values(config: Any, x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor]) -> torch.Tensor:
    """The firing state's charged value minus the threshold at every step, in float64 with the
    torch backend (to find the near-ties where float32 rounding may decide a spike)."""
    from snn.backends.torch import multi_step as torch_multi_step
    from snn.models import evaluate_charge

    model = config.model
    x64, s64, p64 = x.double(), [s.double() for s in states], [p.double() for p in learnables]
    with torch.no_grad():
        _, _, seqs = torch_multi_step(x64, tuple(s64), config, learnables=tuple(p64), store_state_seqs=True)
    out = []
    for t in range(x.shape[0]):
        previous = s64 if t == 0 else [seq[t - 1] for seq in seqs]
        charged = evaluate_charge(model, config.hyper, x64[t], dict(zip(model.state_names, previous)),
                                  dict(zip(model.learnables, p64)))
        out.append(charged[model.fire] - config.hyper[model.threshold])
    return torch.stack(out)


def inputs_without_near_ties(
    config: Any, shape: tuple[int, ...], dtype: torch.dtype, seed: int, band: float = 1e-5, bound: float = 1e3
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """:func:`random_inputs` of the first seed from ``seed`` on where no charged value lies
    within ``band`` of the threshold, so float32 rounding decides no spike. Neurons whose
    charged values leave ``[-bound, bound]`` (an exponential model running away, whose float32
    gradients then overflow in an order-dependent way) get a tenth of their input until none do."""
    for attempt in range(50):
        x, states, learnables = random_inputs(config, shape, dtype, seed + 1000 * attempt)
        for _ in range(8):
            margin = charged_fire_values(config, x, states, learnables)
            wild = (~(margin.abs() <= bound)).flatten(1).any(0) if margin.dim() > 1 else ~(margin.abs() <= bound)
            if not bool(wild.any()):
                break
            x.flatten(1)[:, wild] *= 0.1
        else:
            continue
        if not bool((margin.abs() < band).any()):
            return x, states, learnables
    raise AssertionError(f"no inputs without near-ties found for {config.model.name}")

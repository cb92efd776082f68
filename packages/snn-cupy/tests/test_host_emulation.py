"""The generated kernels, run on the CPU through the host emulation, against independent references.

Every model (snn's registry, so models added later are covered, and the synthetic models of
``conftest.py``) x variant (defaults, the model's examples, hard resets at 0 and -0.3, soft
reset) x ``detach_reset`` x dtype runs through the backend's own Python path
(:func:`snn_cupy.kernels.run_multi_step` with a host executor of 4-thread blocks: flattening,
layout choice, the autograd function, what it saves, the per-block sums of the parameter
gradients). The kernel text is compiled verbatim by the system C++ compiler; only the PTX
float16 conversions are swapped for ``_Float16`` casts.

References:

- finite inputs: a float64 loop of :func:`snn.models.autograd_step` (autograd through the
  model's torch evaluation, the surrogate module for the spike): spikes equal; states and the
  gradients of the input, of every initial state and of every learnable parameter within 1e-5
  (float32) or 1e-2 (float16, inputs representable in float16). The kernels compute in float32,
  so a charged value within rounding of the threshold may spike in one and not the other:
  inputs are drawn from fixed seeds and redrawn until every charged value of the firing state
  in the reference is at least :data:`NEAR_TIE` away from the threshold;
- NaN and infinities in the input and the initial states: the ``"torch"`` backend (registered
  models) and the contract's backward recursion written out here in float32 torch operations
  on the plan's expressions (:func:`_plan_reference`): NaN for NaN, for every combination of
  upstream gradients (absent ones must not turn ``0 * inf`` into NaN). Not autograd: its
  ``torch.where`` backward multiplies a zero into the branch not taken (``0 * sin(inf)`` is NaN),
  where the plan's derivatives, the torch backend and the kernels agree with each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from snn.expr import evaluate, variables
from snn.models import NeuronConfig, NeuronModel, autograd_step, evaluate_charge, evaluate_reset, kernel_plan
from snn.surrogate import SURROGATES, Sigmoid
from snn_cupy.kernels import _vec, run_multi_step
from snn_cupy.sources import backward_kernel_source, forward_kernel_source

DTYPES = {"f32": torch.float32, "f16": torch.float16}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}
#: Smallest distance of a charged firing-state value from the threshold in the random finite
#: cases: float32 arithmetic moves a value by about 1e-7 relative, far less than this.
NEAR_TIE = 1e-4
#: float32 tolerances of models whose float32 arithmetic is less accurate than 1e-5 against
#: float64: ``test_opsmix`` chains a fifth power over the steps, and its plan computes the
#: gradient of ``k`` as ``(h - rest) / k`` (what the torch backend computes too), which cancels
#: where ``relu(x - 0.75) k`` is small next to ``h``.
FLOAT32_TOLERANCE = {"test_opsmix": 2e-4}
SHAPES = ((6, 14), (1, 14), (5, 13))
NAN, INF = float("nan"), float("inf")
#: Which outputs receive an upstream gradient (the others none) in the non-finite tests.
GRADIENT_SETS = {"all": ("spikes", "last", "seqs"), "spikes": ("spikes",), "last": ("last",), "seqs": ("seqs",)}


@pytest.fixture(scope="module", autouse=True)
def _compile_once(host_executor: Any, models: Any) -> Iterator[None]:
    """Every source these tests launch, in one parallel build instead of one per launch."""
    sources = []
    for model in models.all():
        configs = models.configs(model, Sigmoid().spec) + [_atan_config(model)]
        for config, dtype in itertools.product(configs, DTYPES.values()):
            sources += [forward_kernel_source(config, dtype, True), forward_kernel_source(config, dtype, False),
                        backward_kernel_source(config, dtype)]
    host_executor.prepare(sources)
    yield


def _atan_config(model: NeuronModel) -> NeuronConfig:
    example = dict(model.examples[-1]) if model.examples else {}
    return model.config(SURROGATES["ATan"](alpha=3.0).spec, detach_reset=False, **example)


def _reference(config: NeuronConfig, x: torch.Tensor, states: tuple[torch.Tensor, ...],
               learnables: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The contract as a plain autograd loop of the model description."""
    model = config.model
    current = dict(zip(model.state_names, states))
    params = dict(zip(model.learnables, learnables))
    spike_fn = SURROGATES[config.surrogate.name](**config.surrogate.kwargs)
    spikes, seqs = [], {name: [] for name in model.state_names}
    for t in range(x.shape[0]):
        spike, current = autograd_step(config, x[t], current, params, spike_fn)
        spikes.append(spike)
        for name in model.state_names:
            seqs[name].append(current[name])
    return (torch.stack(spikes), tuple(current[n] for n in model.state_names),
            tuple(torch.stack(seqs[n]) for n in model.state_names))


def _data(config: NeuronConfig, seed: int, steps: int, n: int, dtype: torch.dtype, models: Any) -> dict[str, Any]:
    """:func:`_draw` from the first of the seeds ``seed * 1000 + attempt`` whose charged values
    keep :data:`NEAR_TIE` away from the threshold (see the module docstring)."""
    for attempt in range(100):
        data = _draw(config, seed * 1000 + attempt, steps, n, dtype, models)
        if _threshold_margin(config, data) >= NEAR_TIE:
            return data
    raise AssertionError(f"no inputs without a near-tie of the threshold in 100 draws for {config}, seed {seed}")


def _threshold_margin(config: NeuronConfig, data: dict[str, Any]) -> float:
    """The smallest ``|h_fire - threshold|`` of the float64 reference on ``data`` (NaN: 0)."""
    model, hyper = config.model, config.hyper
    current = dict(zip(model.state_names, data["states"]))
    params = dict(zip(model.learnables, data["learnables"]))
    margin = float("inf")
    for t in range(data["x"].shape[0]):
        charged = evaluate_charge(model, hyper, data["x"][t], current, params)
        z = charged[model.fire] - hyper[model.threshold]
        margin = min(margin, float(torch.nan_to_num(z.abs(), nan=0.0).min()))
        current = evaluate_reset(model, hyper, False, charged, (z >= 0).to(z.dtype), params)
    return margin


def _draw(config: NeuronConfig, seed: int, steps: int, n: int, dtype: torch.dtype, models: Any) -> dict[str, Any]:
    """Inputs around the threshold and initial states around the model's initial values, all
    exactly representable in ``dtype`` (held in float64), and upstream gradients."""
    gen = torch.Generator().manual_seed(seed)
    model = config.model

    def draw(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        values = torch.randn(shape, generator=gen, dtype=torch.float64) * scale + shift
        return values.to(dtype).to(torch.float64)

    initial = model.initial_values(config.hyper)
    m = len(model.states)
    return {
        "x": draw(steps, n, scale=0.9, shift=0.45),
        "states": tuple(draw(n, scale=0.4, shift=initial[name]) for name in model.state_names),
        "learnables": tuple(p.double() for p in models.learnables(model)),
        "g_spikes": draw(steps, n),
        "g_last": tuple(draw(n) for _ in range(m)),
        "g_seqs": tuple(draw(steps, n) for _ in range(m)),
    }


def _loss(outputs: Any, data: dict[str, Any], store: bool) -> torch.Tensor:
    spikes, last, seqs = outputs
    loss = (spikes.double() * data["g_spikes"]).sum()
    loss = loss + sum((v.double() * g).sum() for v, g in zip(last, data["g_last"]))
    if store:
        loss = loss + sum((v.double() * g).sum() for v, g in zip(seqs, data["g_seqs"]))
    return loss


def _results(outputs: Any, grads: tuple[torch.Tensor, ...], store: bool) -> dict[str, torch.Tensor]:
    spikes, last, seqs = outputs
    out = {"spikes": spikes.detach()}
    out.update({f"last{i}": v.detach() for i, v in enumerate(last)})
    if store:
        out.update({f"seq{i}": v.detach() for i, v in enumerate(seqs)})
    out["grad_x"] = grads[0]
    m = len(last)
    out.update({f"grad_state{i}": g for i, g in enumerate(grads[1 : 1 + m])})
    out.update({f"grad_param{k}": g for k, g in enumerate(grads[1 + m :])})
    return out


def _run_reference(config: NeuronConfig, data: dict[str, Any], store: bool) -> dict[str, torch.Tensor]:
    x = data["x"].clone().requires_grad_(True)
    states = tuple(s.clone().requires_grad_(True) for s in data["states"])
    learnables = tuple(p.clone().requires_grad_(True) for p in data["learnables"])
    outputs = _reference(config, x, states, learnables)
    grads = torch.autograd.grad(_loss(outputs, data, store), (x, *states, *learnables))
    return _results(outputs, grads, store)


def _run_kernel(executor: Any, config: NeuronConfig, data: dict[str, Any], dtype: torch.dtype, store: bool,
                misaligned: bool = False) -> dict[str, torch.Tensor]:
    """Through run_multi_step; ``misaligned`` starts ``x`` at an odd float16 element (no pairs)."""
    x = data["x"].to(dtype)
    if misaligned:
        buffer = torch.empty(x.numel() + 1, dtype=dtype)
        buffer[1:] = x.flatten()
        x = buffer[1:].view(x.shape)
    x = x.requires_grad_(True)
    states = tuple(s.to(dtype).requires_grad_(True) for s in data["states"])
    learnables = tuple(p.float().requires_grad_(True) for p in data["learnables"])
    outputs = run_multi_step(x, states, config, learnables, store, executor=executor)
    assert (outputs[2] is None) != store
    grads = torch.autograd.grad(_loss(outputs, data, store), (x, *states, *learnables))
    assert all(g.dtype == dtype for g in grads[: 1 + len(states)])
    assert all(g.dtype == torch.float32 and g.shape == () for g in grads[1 + len(states) :])
    with torch.no_grad():  # the inference kernel: the same outputs, nothing saved
        plain = run_multi_step(x.detach(), tuple(s.detach() for s in states), config, learnables, store,
                               executor=executor)
    identical = {"rtol": 0, "atol": 0, "equal_nan": True}
    torch.testing.assert_close(plain[0], outputs[0], **identical)
    for a, b in zip(plain[1] + (plain[2] if store else ()), outputs[1] + (outputs[2] if store else ())):
        torch.testing.assert_close(a, b, **identical)
    assert plain[0].grad_fn is None
    return _results(outputs, grads, store)


def _compare(case: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    tol = TOLERANCE[dtype] if dtype != torch.float32 else FLOAT32_TOLERANCE.get(case.split("/")[0], TOLERANCE[dtype])
    assert set(got) == set(want), case
    assert torch.equal(got["spikes"].double(), want["spikes"]), f"{case}: spikes differ"
    for name, expected in want.items():
        actual = got[name].double()
        assert torch.isfinite(actual).all(), f"{case}: {name} has non-finite entries"
        assert torch.allclose(actual, expected, rtol=tol, atol=tol), (
            f"{case}: {name} differs: max |diff| {(actual - expected).abs().max().item():.3g}"
        )


@pytest.mark.parametrize("tag", DTYPES)
def test_kernels_match_the_autograd_loop(host_executor: Any, models: Any, model: NeuronModel, tag: str) -> None:
    """Every variant and detach_reset, T = 1 and odd sizes, with and without state sequences;
    float16 in both layouts (pairs, and single neurons for a misaligned input)."""
    dtype = DTYPES[tag]
    for index, config in enumerate(models.configs(model, Sigmoid().spec)):
        for (steps, n), store in itertools.product(SHAPES, (True, False)):
            data = _data(config, 1000 * index + steps * 31 + n, steps, n, dtype, models)
            case = f"{model.name}/{dict(config.hyperparameters)}/detach={config.detach_reset}/{tag}/T={steps}/N={n}"
            want = _run_reference(config, data, store)
            got = _run_kernel(host_executor, config, data, dtype, store)
            _compare(case, got, want, dtype)
            if dtype == torch.float16 and n % 2 == 0:
                single = _run_kernel(host_executor, config, data, dtype, store, misaligned=True)
                for name in got:  # the pair layout computes what the single layout computes
                    if name.startswith("grad_param"):  # block sums over other thread counts
                        torch.testing.assert_close(single[name], got[name], rtol=1e-5, atol=1e-6)
                    else:
                        assert torch.equal(single[name], got[name]), f"{case}: layouts differ in {name}"


def test_another_surrogate_and_more_blocks(host_executor: Any, models: Any, model: NeuronModel) -> None:
    """ATan(alpha=3) on the model's last example, 37 neurons (ten blocks of four threads)."""
    config = _atan_config(model)
    data = _data(config, 7, 6, 37, torch.float32, models)
    _compare(f"{model.name}/ATan", _run_kernel(host_executor, config, data, torch.float32, True),
             _run_reference(config, data, True), torch.float32)


def test_pair_layout_needs_alignment() -> None:
    """Pairs of neurons only for float16, an even count and buffers aligned for 32/64-bit accesses."""
    half = torch.zeros(8, dtype=torch.float16)
    single = torch.zeros(9, dtype=torch.float16)[1:]
    assert _vec(torch.float16, 8, (half, torch.zeros(8))) == 2
    assert _vec(torch.float16, 7, (half[:7],)) == 1
    assert _vec(torch.float16, 8, (single,)) == 1
    assert _vec(torch.float16, 8, (half, torch.zeros(9)[1:])) == 1
    assert _vec(torch.float32, 8, (torch.zeros(8),)) == 1


# --- non-finite inputs ----------------------------------------------------------------------


def _nonfinite_data(model: NeuronModel, seed: int, dtype: torch.dtype) -> dict[str, Any]:
    """``[T=4, N=12]`` inputs on a 1/8 grid (exact in float16) with NaN, +inf and -inf in ``x``
    (columns 0-5) and in each initial state (columns 6-8); columns 9-11 stay finite."""
    gen = torch.Generator().manual_seed(seed)

    def grid(*shape: int, low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=gen).to(dtype) / 8

    x = grid(4, 12, low=-6, high=14)
    x[0, 0], x[2, 1], x[0, 2], x[1, 3], x[0, 4], x[3, 5] = NAN, NAN, INF, INF, -INF, -INF
    states = []
    for i in range(len(model.states)):
        value = grid(12, low=-4, high=8)
        value[6 + i % 3], value[6 + (i + 1) % 3], value[6 + (i + 2) % 3] = NAN, INF, -INF
        states.append(value)
    m = len(model.states)
    return {
        "x": x, "states": tuple(states), "learnables": models_learnables(model),
        "spikes": grid(4, 12, low=-8, high=8), "last": tuple(grid(12, low=-8, high=8) for _ in range(m)),
        "seqs": tuple(grid(4, 12, low=-8, high=8) for _ in range(m)),
    }


def models_learnables(model: NeuronModel) -> tuple[torch.Tensor, ...]:
    """Learnable values on the 1/8 grid (PLIF's ``w = 0``: a decay of 1/2, exact in float16)."""
    return tuple(torch.tensor(0.0 if name == "w" else 0.5) for name in model.learnables)


def _nonfinite_run(kernel: Any, config: NeuronConfig, data: dict[str, Any], given: tuple[str, ...],
                   dtype: torch.dtype) -> dict[str, Any]:
    x = data["x"].to(dtype).requires_grad_(True)
    states = tuple(s.to(dtype).requires_grad_(True) for s in data["states"])
    learnables = tuple(p.requires_grad_(False) for p in data["learnables"])
    spikes, last, seqs = kernel(x, states, config, learnables)
    outputs = {"spikes": (spikes,), "last": last, "seqs": seqs}
    tensors = [t for name in given for t in outputs[name]]
    upstream = [g.to(t.dtype) for name in given for g, t in zip(
        (data["spikes"],) if name == "spikes" else data[name], outputs[name])]
    grads = torch.autograd.grad(tensors, (x, *states), upstream)
    return {"spikes": spikes.detach(), "last": [v.detach() for v in last], "seqs": [v.detach() for v in seqs],
            "grad_x": grads[0], "grad_states": list(grads[1:])}


def _plan_reference(x: torch.Tensor, states: Any, config: NeuronConfig, learnables: Any) -> Any:
    """The contract written out: the plan's expressions evaluated with torch per step (float32)."""
    return _PlanFunction.apply(config, x.float(), *(s.float() for s in states), *(p.float() for p in learnables))


class _PlanFunction(torch.autograd.Function):
    """Forward: charge, fire, reset per step. Backward: the recursion of the contract
    (:class:`snn.models.KernelPlan`), newest step first, skipping gradients that never arrived."""

    @staticmethod
    def forward(ctx: Any, config: NeuronConfig, x: torch.Tensor, *rest: torch.Tensor) -> Any:  # type: ignore[override]  # torch's Function.forward takes *args
        plan = kernel_plan(config)
        m = len(plan.states)
        params = {f"p_{k}": p.reshape(()) for k, p in zip(plan.learnables, rest[m:])}
        u = list(rest[:m])
        envs, spikes, seqs = [], [], []
        for t in range(x.shape[0]):
            env = {**params, "x": x[t], **{f"u_{n}": u[i] for i, n in enumerate(plan.states)}}
            for i, name in enumerate(plan.states):
                env[f"h_{name}"] = _tensor(evaluate(plan.charge[i], env), x[t])
            env["s"] = (env[f"h_{plan.states[plan.fire_index]}"] >= plan.threshold).float()
            u = [_tensor(evaluate(plan.reset[i], env), x[t]) for i in range(m)]
            envs.append(env)
            spikes.append(env["s"])
            seqs.append(u)
        ctx.plan, ctx.envs, ctx.m, ctx.n_p = plan, envs, m, len(plan.learnables)
        ctx.set_materialize_grads(False)
        return (torch.stack(spikes), *u, *(torch.stack([step[i] for step in seqs]) for i in range(m)))

    @staticmethod
    def backward(ctx: Any, g_spikes: Any, *grads: Any) -> Any:  # type: ignore[override]  # torch's Function.backward takes *grads
        plan, envs, m = ctx.plan, ctx.envs, ctx.m
        g_last, g_seqs = grads[:m], grads[m:]
        steps = len(envs)
        carry: list[Any] = [None] * m
        grad_x, grad_p = [], [torch.zeros(()) for _ in range(ctx.n_p)]

        def add(a: Any, b: Any) -> Any:
            return b if a is None else a + b

        def term(gradient: Any, coefficient: Any, env: dict[str, Any]) -> Any:
            return None if gradient is None or coefficient is None else gradient * evaluate(coefficient, env)

        for t in range(steps - 1, -1, -1):
            env = envs[t]
            g_state = [carry[i] if t < steps - 1 else g_last[i] for i in range(m)]
            for i in range(m):
                if g_seqs[i] is not None:
                    g_state[i] = add(g_state[i], g_seqs[i][t])
            g_spike = g_spikes[t] if g_spikes is not None else None
            for i in range(m):
                piece = term(g_state[i], plan.reset_s[i], env)
                g_spike = g_spike if piece is None else add(g_spike, piece)
            g_charged = []
            for j in range(m):
                total = None
                for i in range(m):
                    piece = term(g_state[i], plan.reset_h[i][j], env)
                    total = total if piece is None else add(total, piece)
                if j == plan.fire_index and g_spike is not None:
                    z = env[f"h_{plan.states[j]}"] - plan.threshold
                    total = add(total, g_spike * _tensor(evaluate(plan.surrogate, {"z": z}), z))
                g_charged.append(total)
            gx = None
            for j in range(m):
                piece = term(g_charged[j], plan.charge_x[j], env)
                gx = gx if piece is None else add(gx, piece)
            grad_x.append(gx if gx is not None else torch.zeros_like(env["x"]))
            for i in range(m):
                total = None
                for j in range(m):
                    piece = term(g_charged[j], plan.charge_u[j][i], env)
                    total = total if piece is None else add(total, piece)
                carry[i] = total
            for k in range(ctx.n_p):
                for j in range(m):
                    piece = term(g_charged[j], plan.charge_p[j][k], env)
                    grad_p[k] = grad_p[k] if piece is None else grad_p[k] + piece.sum()
                for i in range(m):
                    piece = term(g_state[i], plan.reset_p[i][k], env)
                    grad_p[k] = grad_p[k] if piece is None else grad_p[k] + piece.sum()
        like = envs[0]["x"]
        grad_init = [c if c is not None else torch.zeros_like(like) for c in carry]
        return (None, torch.stack(grad_x[::-1]), *grad_init, *grad_p)


def _tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.full_like(like, float(value))


@pytest.mark.parametrize("tag", DTYPES)
def test_nonfinite_inputs(host_executor: Any, models: Any, model: NeuronModel, tag: str) -> None:
    """NaN, +inf and -inf in the input and the initial states: spikes equal the references', states
    and gradients have NaN and infinities exactly where they do and are close elsewhere, for
    every combination of upstream gradients (see the module docstring for the references)."""
    from snn.backends import torch as torch_backend

    dtype = DTYPES[tag]
    tol = TOLERANCE[dtype]

    def host(x: torch.Tensor, states: Any, config: NeuronConfig, learnables: Any) -> Any:
        return run_multi_step(x, states, config, learnables, True, executor=host_executor)

    def torch_kernel(x: torch.Tensor, states: Any, config: NeuronConfig, learnables: Any) -> Any:
        return torch_backend.multi_step(x, states, config, learnables=learnables, store_state_seqs=True)

    def plan(x: torch.Tensor, states: Any, config: NeuronConfig, learnables: Any) -> Any:
        spikes, *rest = _plan_reference(x, states, config, learnables)
        m = len(states)
        return spikes.to(x.dtype), tuple(v.to(x.dtype) for v in rest[:m]), tuple(v.to(x.dtype) for v in rest[m:])

    for index, config in enumerate(models.configs(model, Sigmoid().spec)):
        # The torch backend multiplies an incoming state gradient by the combined coefficient
        # d charge / d u * d reset / d h in one operation; where that gradient is infinite (only
        # possible when d charge / d u reads the states, as QIF's does) it gives +-inf where
        # autograd's term-by-term sum gives NaN. The plan's recursion is the reference there.
        plan_of = kernel_plan(config)
        constant_leak = all(
            c is None or not any(v.startswith(("u_", "h_", "x")) for v in variables(c))
            for row in plan_of.charge_u for c in row
        )
        references = [("plan", plan)] + (
            [("torch", torch_kernel)] if model in models.registered() and constant_leak else []
        )
        data = _nonfinite_data(model, 17 + index, dtype)
        for label, given in GRADIENT_SETS.items():
            got = _nonfinite_run(host, config, data, given, dtype)
            assert any(v.isnan().any() for v in got["seqs"])  # the case is non-trivial
            for name, reference in references:
                want = _nonfinite_run(reference, config, data, given, dtype)
                case = f"{model.name}/{dict(config.hyperparameters)}/detach={config.detach_reset}/{tag}/grads={label}/vs {name}"
                assert torch.equal(got["spikes"], want["spikes"]), f"{case}: spikes differ"
                for key in ("last", "seqs", "grad_states"):
                    for i, (a, b) in enumerate(zip(got[key], want[key])):
                        _same_nonfinite(f"{case}: {key}[{i}]", a, b, tol)
                _same_nonfinite(f"{case}: grad_x", got["grad_x"], want["grad_x"], tol)


def _same_nonfinite(case: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    assert torch.equal(actual.isnan(), expected.isnan()), f"{case}: NaN positions differ"
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol, equal_nan=True,
                               msg=lambda m: f"{case}: {m}")

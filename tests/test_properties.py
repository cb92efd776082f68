"""Property-based tests (hypothesis): backends, functional helpers and invalid inputs.

1. **Backends against independent computations.** For every installed backend that runs here,
   plus the CuPy kernel sources compiled for the CPU (``kernel_backend_device``), random neuron kinds, shapes (zero sizes included), dtypes, thresholds,
   resets, ``detach_reset`` / ``decay_input`` and surrogates (random parameters):

   - *exact regime*: inputs, states and thresholds are multiples of 1/8 and the decays are 1/2
     or 1/4, so every charge and reset is exact in float32 / float64 and the potential often
     lands exactly on the threshold (``H(0) = 1``) or on a surrogate's kink. Spikes and
     potentials must then be *bit-identical* to the contract loop written here, and gradients
     must agree with the torch backend's (non-torch) or with autograd through that loop (torch);
   - *generic regime*: random floats and time constants (PLIF included) in every claimed dtype,
     compared with the contract loop in float64 (spikes exactly, potentials to dtype rounding)
     and, for gradients, with the torch backend; examples with a potential within rounding of the
     threshold are rejected, since there the exact answer is a coin toss of the last bit.

2. **Functional helpers** against plain-PyTorch computations written here.
3. **Invalid inputs** (wrong ranks, integer dtypes, a second device (``meta``), empty sequences,
   zero or negative sizes): a typed error (``TypeError`` / ``ValueError`` / ``snn.errors.*``)
   whose message names the argument; never a crash, a hang or a wrong answer.

Examples per property are kept modest (``max_examples``; ``SNN_PROPERTY_SCALE`` multiplies them)
and counted in ``EXAMPLES`` (printed with ``-s``).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    assume,
    given,
    settings,
    strategies as st,
)
from if_lif_plif import FamilyConfig, family_kernel, family_serves  # noqa: E402

from snn import functional, surrogate  # noqa: E402
from snn.errors import SNNError  # noqa: E402
from snn.plugins import get_registry  # noqa: E402

#: Examples run per property (and backend), filled in while the tests run.
EXAMPLES: Counter[str] = Counter()

#: Multiplies every ``max_examples`` (e.g. ``SNN_PROPERTY_SCALE=20`` for a long bug hunt).
SCALE = float(os.environ.get("SNN_PROPERTY_SCALE", "1"))
FAST = settings(max_examples=max(1, int(25 * SCALE)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
BACKEND = settings(
    max_examples=max(1, int(20 * SCALE)),
    deadline=None,
    # the backend fixture only registers a host emulation for the whole test, on purpose
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module", autouse=True)
def _report_examples() -> Iterator[None]:
    yield
    if EXAMPLES:
        print("\nhypothesis examples per property:")
        for name, count in sorted(EXAMPLES.items()):
            print(f"  {name}: {count}")


# ---------------------------------------------------------------------------------------------
# the contract, written out (independent of every backend)
# ---------------------------------------------------------------------------------------------


class _Fire(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.derivative(u), None


def contract_loop(
    x_seq: torch.Tensor, v0: torch.Tensor, config: FamilyConfig, w: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes, v_last, v_seq, h_seq)`` by the contract's equations, with autograd."""
    derivative = surrogate.derivative_function(config.surrogate)
    vr = config.reset_potential
    k = torch.sigmoid(w) if config.kind == "plif" else (1.0 / config.tau if config.kind == "lif" else None)
    v = v0
    spikes, potentials, charged = [], [], []
    for x in x_seq.unbind(0):
        if config.kind == "if":
            h = v + x
        elif config.kind == "lif":
            h = v + (x - (v - vr)) / config.tau if config.decay_input else v - (v - vr) / config.tau + x
        else:
            h = v + (x - (v - vr)) * k if config.decay_input else v - (v - vr) * k + x
        s = _Fire.apply(h - config.v_threshold, derivative)
        s_reset = s.detach() if config.detach_reset else s
        v = s_reset * vr + (1.0 - s_reset) * h if config.hard_reset else h - s_reset * config.v_threshold
        spikes.append(s)
        potentials.append(v)
        charged.append(h)
    return torch.stack(spikes), v, torch.stack(potentials), torch.stack(charged)


def run_kernel(
    backend: str, config: FamilyConfig, x: torch.Tensor, v0: torch.Tensor, w: torch.Tensor | None,
    gs: torch.Tensor, gv: torch.Tensor, gl: torch.Tensor, use_loop: bool = False,
) -> dict[str, torch.Tensor]:
    """Forward + backward of one kernel (or of :func:`contract_loop`); values and gradients."""
    leaves = {"x": x.detach().clone().requires_grad_(), "v0": v0.detach().clone().requires_grad_()}
    if w is not None:
        leaves["w"] = w.detach().clone().requires_grad_()
    if use_loop:
        spikes, v_last, v_seq, _ = contract_loop(leaves["x"], leaves["v0"], config, leaves.get("w"))
    else:
        kernel = family_kernel(backend, config.kind)
        spikes, v_last, v_seq = kernel(leaves["x"], leaves["v0"], config, w=leaves.get("w"), store_v_seq=True)
    loss = (spikes * gs).sum() + (v_seq * gv).sum() + (v_last * gl).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    out = {"spikes": spikes.detach(), "v_last": v_last.detach(), "v_seq": v_seq.detach()}
    for name, grad in zip(leaves, grads):
        out[f"grad_{name}"] = grad if grad is not None else torch.zeros_like(leaves[name])
    return out


# ---------------------------------------------------------------------------------------------
# strategies for neuron configurations
# ---------------------------------------------------------------------------------------------


def _surrogate_spec(draw: st.DrawFn, names: list[str]) -> Any:
    name = draw(st.sampled_from(sorted(names)))
    cls = surrogate.SURROGATES[name]
    defaults = dict(cls().spec.params)
    kwargs: dict[str, float] = {}
    for param, default in defaults.items():
        if param == "n":
            kwargs[param] = draw(st.integers(1, 4))
        elif default == 0.0:
            kwargs[param] = draw(st.sampled_from([0.0, 0.125, 0.5]))
        else:
            kwargs[param] = default * draw(st.sampled_from([0.75, 1.0, 1.5]))
    try:
        return cls(**kwargs).spec
    except ValueError:  # a parameter out of this surrogate's documented range: its defaults
        return cls().spec


def _info(backend: str) -> Any:
    return get_registry().backend(backend)


def _kinds(backend: str) -> list[str]:
    return [k for k in ("if", "lif", "plif") if family_serves(_info(backend), k)]


def _shape(draw: st.DrawFn, max_size: int = 5) -> tuple[int, ...]:
    steps = draw(st.integers(1, 6))
    trailing = draw(st.lists(st.integers(0, max_size), min_size=1, max_size=3))
    return (steps, *trailing)


def _seeded(shape: tuple[int, ...], seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# 1. backends
# ---------------------------------------------------------------------------------------------


@BACKEND
@given(data=st.data())
def test_exact_regime_is_bit_identical_to_the_contract(kernel_backend_device: tuple[str, str], data: st.DataObject) -> None:
    backend, device = kernel_backend_device
    info = _info(backend)
    draw = data.draw
    kind = draw(st.sampled_from(_kinds(backend)), label="kind")
    dtypes = [d for d in (torch.float32, torch.float64) if d in info.dtypes]
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    spec = _surrogate_spec(draw, list(info.claimed_surrogates()))
    hard = draw(st.booleans(), label="hard_reset")
    config = FamilyConfig(
        kind,
        draw(st.integers(1, 16), label="v_threshold*8") / 8,
        draw(st.integers(-8, 4), label="v_reset*8") / 8 if hard else None,
        draw(st.booleans(), label="detach_reset"),
        draw(st.booleans(), label="decay_input") if kind != "if" else False,
        draw(st.sampled_from([2.0, 4.0]), label="tau") if kind == "lif" else None,
        spec,
    )
    shape = _shape(draw)
    gen = _seeded(shape, draw(st.integers(0, 2**31 - 1), label="seed"))
    x = (torch.randint(-16, 25, shape, generator=gen) / 8).to(dtype)
    v0 = (torch.randint(-8, 9, shape[1:], generator=gen) / 8).to(dtype)
    w = torch.zeros((), dtype=dtype) if kind == "plif" else None  # sigmoid(0) = 1/2 exactly
    gs, gv, gl = (torch.randint(-4, 5, s, generator=gen).to(dtype) / 4 for s in (shape, shape, shape[1:]))
    EXAMPLES[f"exact/{backend}-{device}"] += 1

    on = {"device": device}
    got = run_kernel(
        backend, config, x.to(**on), v0.to(**on), None if w is None else w.to(**on), gs.to(**on), gv.to(**on), gl.to(**on)
    )
    want = run_kernel(backend, config, x, v0, w, gs, gv, gl, use_loop=True)
    for key in ("spikes", "v_seq", "v_last"):
        assert got[key].dtype == dtype and got[key].shape == want[key].shape, key
        assert torch.equal(got[key].cpu(), want[key]), (key, config, got[key], want[key])
    reference = want if backend == "torch" else run_kernel("torch", config, x, v0, w, gs, gv, gl)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
    for key in got:
        if key.startswith("grad_"):
            torch.testing.assert_close(got[key].cpu(), reference[key], **tol, msg=lambda m, k=key: f"{k} {config}: {m}")


def _generic_config(draw: st.DrawFn, backend: str) -> tuple[FamilyConfig, float | None]:
    info = _info(backend)
    kind = draw(st.sampled_from(_kinds(backend)), label="kind")
    spec = _surrogate_spec(draw, list(info.claimed_surrogates()))
    threshold = draw(st.floats(0.05, 3.0), label="v_threshold")
    reset = draw(st.one_of(st.none(), st.floats(-1.0, 0.5)), label="v_reset")
    tau = draw(st.floats(1.05, 20.0), label="tau") if kind == "lif" else None
    init_tau = draw(st.floats(1.05, 20.0), label="init_tau") if kind == "plif" else None
    config = FamilyConfig(
        kind, threshold, reset, draw(st.booleans(), label="detach_reset"),
        draw(st.booleans(), label="decay_input") if kind != "if" else False, tau, spec,
    )
    return config, init_tau


HALF_TOL = {"rtol": 1e-2, "atol": 1e-2}
TOLERANCES = {torch.float16: HALF_TOL, torch.bfloat16: HALF_TOL, torch.float32: {"rtol": 1e-5, "atol": 1e-5},
              torch.float64: {"rtol": 1e-9, "atol": 1e-9}}
#: Gradients in bfloat16: 4 units of its 8-bit precision (2**-7 each). A backend may round the
#: saved potential or intermediate values differently from torch's float32 arithmetic, which
#: moves an oscillating surrogate's derivative by a few bfloat16 units; 1e-2 is only 1.3 units.
GRAD_TOLERANCES = {**TOLERANCES, torch.bfloat16: {"rtol": 4 * 2**-7, "atol": 4 * 2**-7}}


@BACKEND
@given(data=st.data())
def test_generic_regime_matches_contract_and_torch(kernel_backend_device: tuple[str, str], data: st.DataObject) -> None:
    backend, device = kernel_backend_device
    info = _info(backend)
    draw = data.draw
    config, init_tau = _generic_config(draw, backend)
    dtype = draw(st.sampled_from(sorted(info.dtypes, key=str)), label="dtype")
    shape = _shape(draw)
    gen = _seeded(shape, draw(st.integers(0, 2**31 - 1), label="seed"))
    scale = draw(st.floats(0.5, 4.0), label="input scale")
    x = ((torch.rand(shape, generator=gen, dtype=torch.float64) - 0.2) * scale).to(dtype)
    v0 = (torch.rand(shape[1:], generator=gen, dtype=torch.float64) * 0.5).to(dtype)
    w = None
    if config.kind == "plif":
        w = torch.tensor(-math.log(init_tau - 1.0), dtype=dtype)
    gs, gv, gl = (torch.rand(s, generator=gen, dtype=torch.float64).to(dtype) for s in (shape, shape, shape[1:]))

    # float64 contract loop on the same (rounded) values; reject near-ties of the threshold
    x64, v64 = x.double(), v0.double()
    w64 = None if w is None else w.double()
    spikes64, last64, seq64, h64 = contract_loop(x64, v64, config, w64)
    if h64.numel():
        margin = (h64 - config.v_threshold).abs().min().item()
        assume(margin > 1e-2 if dtype in (torch.float16, torch.bfloat16) else margin > 1e-5)
    EXAMPLES[f"generic/{backend}-{device}"] += 1

    on = {"device": device}
    got = run_kernel(
        backend, config, x.to(**on), v0.to(**on), None if w is None else w.to(**on), gs.to(**on), gv.to(**on), gl.to(**on)
    )
    assert torch.equal(got["spikes"].cpu().double(), spikes64.detach())
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(got["v_seq"].cpu().double(), seq64.detach(), **tol)
    torch.testing.assert_close(got["v_last"].cpu().double(), last64.detach(), **tol)
    if backend != "torch":
        reference = run_kernel("torch", config, x, v0, w, gs, gv, gl)
        for key in got:
            if key.startswith("grad_"):
                torch.testing.assert_close(
                    got[key].cpu(), reference[key], **GRAD_TOLERANCES[dtype], msg=lambda m, k=key: f"{k}: {m}"
                )


# ---------------------------------------------------------------------------------------------
# 2. functional helpers against plain computations
# ---------------------------------------------------------------------------------------------


@FAST
@given(
    steps=st.integers(1, 5), batch=st.integers(1, 4), classes=st.integers(2, 6),
    extra=st.lists(st.integers(1, 3), max_size=1), seed=st.integers(0, 2**31 - 1),
)
def test_tet_loss_is_the_mean_of_per_step_cross_entropies(steps: int, batch: int, classes: int, extra: list[int], seed: int) -> None:
    EXAMPLES["functional/tet"] += 1
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, classes, *extra, generator=gen, dtype=torch.float64)
    target = torch.randint(0, classes, (batch, *extra), generator=gen)
    got = functional.temporal_efficient_training_cross_entropy(x, target)
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    for t in range(steps):
        logp = x[t] - torch.logsumexp(x[t], dim=1, keepdim=True)
        total = total - logp.gather(1, target.unsqueeze(1)).sum()
        count += target.numel()
    torch.testing.assert_close(got, total / count, rtol=1e-12, atol=1e-12)


@FAST
@given(
    n=st.integers(0, 4), m=st.integers(0, 4), features=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
    kernel=st.sampled_from(["linear", "polynomial", "sigmoid", "gaussian"]),
)
def test_kernel_dot_product_matches_pairwise_loops(n: int, m: int, features: int, seed: int, kernel: str) -> None:
    EXAMPLES["functional/kernel_dot_product"] += 1
    if kernel == "gaussian":
        m = n
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen, dtype=torch.float64)
    y = torch.randn(m, features, generator=gen, dtype=torch.float64)
    args = {"linear": (), "polynomial": (3,), "sigmoid": (0.7,), "gaussian": (1.3,)}[kernel]
    got = functional.kernel_dot_product(x, y, kernel, *args)
    want = torch.empty(n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            dot = float(sum(x[i, k] * y[j, k] for k in range(features)))
            if kernel == "linear":
                want[i, j] = dot
            elif kernel == "polynomial":
                want[i, j] = dot**3
            elif kernel == "sigmoid":
                want[i, j] = 1.0 / (1.0 + math.exp(-0.7 * dot))
            else:
                dist2 = float(sum((x[i, k] - y[j, k]) ** 2 for k in range(features)))
                want[i, j] = math.exp(-dist2 / (2 * 1.3**2))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@FAST
@given(labels=st.lists(st.integers(0, 5), max_size=6), extra_classes=st.integers(0, 3), n=st.integers(0, 3))
def test_redundant_one_hot_matches_a_loop(labels: list[int], extra_classes: int, n: int) -> None:
    EXAMPLES["functional/redundant_one_hot"] += 1
    classes = (max(labels) + 1 if labels else 1) + extra_classes
    got = functional.redundant_one_hot(torch.tensor(labels, dtype=torch.long), classes, n)
    want = torch.zeros(len(labels), classes * n)
    for row, label in enumerate(labels):
        want[row, label * n:(label + 1) * n] = 1.0
    assert torch.equal(got, want)


@FAST
@given(rows=st.lists(st.lists(st.integers(0, 1), min_size=1, max_size=6), min_size=1, max_size=4).filter(
    lambda rs: len({len(r) for r in rs}) == 1))
def test_first_spike_index_matches_a_loop(rows: list[list[int]]) -> None:
    EXAMPLES["functional/first_spike_index"] += 1
    spikes = torch.tensor(rows, dtype=torch.float32)
    got = functional.first_spike_index(spikes)
    want = torch.zeros_like(spikes, dtype=torch.bool)
    for i, row in enumerate(rows):
        if 1 in row:
            want[i, row.index(1)] = True
    assert torch.equal(got, want)


@FAST
@given(steps=st.integers(1, 6), width=st.integers(0, 3), d=st.integers(0, 8), seed=st.integers(0, 1000))
def test_delay_matches_a_shifted_list(steps: int, width: int, d: int, seed: int) -> None:
    EXAMPLES["functional/delay"] += 1
    x = torch.randn(steps, width, generator=torch.Generator().manual_seed(seed))
    got = functional.delay(x, d)
    want = torch.stack([x[t - d] if t >= d else torch.zeros(width) for t in range(steps)])
    assert torch.equal(got, want)


@FAST
@given(steps=st.integers(1, 5), batch=st.integers(1, 3), features=st.integers(1, 4), seed=st.integers(0, 1000),
       split=st.integers(1, 6))
def test_forward_helpers_match_per_step_loops(steps: int, batch: int, features: int, seed: int, split: int) -> None:
    EXAMPLES["functional/forward_helpers"] += 1
    from snn import neuron

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, features, generator=gen) * 2
    linear = torch.nn.Linear(features, 3)
    loop = torch.stack([linear(x[t]) for t in range(steps)])
    torch.testing.assert_close(functional.seq_to_ann_forward(x, linear), loop)
    torch.testing.assert_close(functional.multi_step_forward(x, linear), loop)
    torch.testing.assert_close(
        functional.t_last_seq_to_ann_forward(x.permute(1, 2, 0), torch.nn.Identity()), x.permute(1, 2, 0)
    )
    # a stateful single-step neuron over time vs the multi-step neuron over chunks
    single = neuron.LIFNode(tau=2.0)
    want = torch.stack([single(x[t]) for t in range(steps)])
    multi = neuron.LIFNode(tau=2.0, step_mode="m")
    assert torch.equal(functional.multi_step_forward(x, neuron.LIFNode(tau=2.0)), want)
    assert torch.equal(functional.chunk_multi_step_forward(min(split, steps), x, multi), want)


@FAST
@given(batch=st.integers(1, 5), classes=st.integers(1, 4), features=st.integers(1, 6), seed=st.integers(0, 1000))
def test_spike_similar_loss_matches_cosine_similarities(batch: int, classes: int, features: int, seed: int) -> None:
    EXAMPLES["functional/spike_similar_loss"] += 1
    gen = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(batch, features, 3, generator=gen) > 0.5).double()
    labels = F.one_hot(torch.randint(0, classes, (batch,), generator=gen), classes)
    got = functional.spike_similar_loss(spikes, labels)
    flat = spikes.flatten(1)
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            norm = float(flat[i].norm() * flat[j].norm())
            cos = float(flat[i] @ flat[j]) / (norm + 1e-8)
            same = 1.0 if bool((labels[i] * labels[j]).sum() > 0) else 0.0
            total += (min(max(cos, -1.0), 1.0) - same) ** 2
    torch.testing.assert_close(got, torch.tensor(total / batch**2, dtype=torch.float64), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# 3. invalid inputs: typed errors that name the argument
# ---------------------------------------------------------------------------------------------

TYPED = (TypeError, ValueError, SNNError)
META = torch.device("meta")
INT_DTYPES = [torch.int8, torch.int32, torch.int64, torch.uint8, torch.bool]


def expect_typed_error(call: Callable[[], Any], argument: str, types: tuple[type, ...] = TYPED) -> None:
    with pytest.raises(types) as caught:
        call()
    named = re.search(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])", str(caught.value))
    assert named, f"the message does not name {argument!r}: {caught.value}"


@FAST
@given(data=st.data())
def test_invalid_neuron_inputs_raise_typed_errors(data: st.DataObject) -> None:
    from snn import neuron

    EXAMPLES["invalid/neuron inputs"] += 1
    draw = data.draw
    cls = draw(st.sampled_from([neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode]))
    case = draw(st.sampled_from(["rank 0", "empty sequence", "complex", "not a tensor"]))
    dims = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    if case == "not a tensor":
        expect_typed_error(lambda: cls()(torch.zeros(*dims).tolist()), "x", (TypeError,))
    elif case == "rank 0":
        expect_typed_error(lambda: cls(step_mode="m")(torch.tensor(0.5)), "x_seq", (ValueError,))
    elif case == "empty sequence":
        expect_typed_error(lambda: cls(step_mode="m")(torch.zeros(0, *dims)), "x_seq", (ValueError,))
    else:
        expect_typed_error(lambda: cls(step_mode="m")(torch.zeros(*dims, dtype=torch.complex64)), "x_seq", (TypeError,))


@FAST
@given(data=st.data())
def test_integer_neuron_inputs_run_as_their_float_values(data: st.DataObject) -> None:
    # integer and bool inputs (event counts) are promoted as SpikingJelly's float states promote them
    from snn import neuron

    EXAMPLES["neuron/integer inputs"] += 1
    draw = data.draw
    cls = draw(st.sampled_from([neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode]))
    dtype = draw(st.sampled_from(INT_DTYPES))
    step_mode = draw(st.sampled_from(["s", "m"]))
    dims = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    high = 2 if dtype == torch.bool else 4
    counts = torch.randint(0, high, (3, *dims), generator=torch.Generator().manual_seed(draw(st.integers(0, 99)))).to(dtype)
    counted, floated = cls(step_mode=step_mode), cls(step_mode=step_mode)
    if step_mode == "m":
        got, expected = counted(counts), floated(counts.to(torch.get_default_dtype()))
    else:
        got = torch.stack([counted(step) for step in counts])
        expected = torch.stack([floated(step) for step in counts.to(torch.get_default_dtype())])
    assert got.dtype == torch.get_default_dtype()
    assert torch.equal(got, expected) and torch.equal(counted.v, floated.v)


@FAST
@given(data=st.data())
def test_invalid_neuron_hyper_parameters_raise_typed_errors(data: st.DataObject) -> None:
    from snn import neuron

    EXAMPLES["invalid/neuron hyper-parameters"] += 1
    draw = data.draw
    case = draw(st.sampled_from(["tau", "init_tau", "v_threshold", "v_reset", "flag", "step_mode"]))
    bad_number = draw(st.one_of(st.floats(max_value=1.0), st.just(float("nan")), st.just(float("inf"))))
    if case == "tau":
        expect_typed_error(lambda: neuron.LIFNode(tau=bad_number), "tau")
    elif case == "init_tau":
        expect_typed_error(lambda: neuron.ParametricLIFNode(init_tau=bad_number), "init_tau")
    elif case == "v_threshold":
        bad = draw(st.sampled_from([float("nan"), float("inf"), True, "1.0", None]))
        expect_typed_error(lambda: neuron.IFNode(v_threshold=bad), "v_threshold")
    elif case == "v_reset":
        bad = draw(st.sampled_from([float("nan"), -float("inf"), False, "0"]))
        expect_typed_error(lambda: neuron.IFNode(v_reset=bad), "v_reset")
    elif case == "flag":
        name = draw(st.sampled_from(["detach_reset", "store_v_seq", "decay_input"]))
        # store_v_seq and decay_input take the integers 0 and 1 as SpikingJelly does; detach_reset
        # is a bool there too (the reference asserts it)
        bad = draw(st.sampled_from([1, 0, "yes", None] if name == "detach_reset" else [2, -1, "yes", None, 0.5]))
        expect_typed_error(lambda: neuron.LIFNode(**{name: bad}), name)
    else:
        bad = draw(st.sampled_from(["", "x", "single", 1, None]))
        expect_typed_error(lambda: neuron.LIFNode(step_mode=bad), "step_mode")


@BACKEND
@given(data=st.data())
def test_invalid_kernel_arguments_raise_typed_errors(kernel_backend_device: tuple[str, str], data: st.DataObject) -> None:
    """Every backend's kernels, called directly as the contract allows, reject bad arguments."""
    backend, device = kernel_backend_device
    draw = data.draw
    kind = draw(st.sampled_from(_kinds(backend)))
    generic = get_registry().kernel(backend, "multi_step")
    config = FamilyConfig(kind, 1.0, 0.0, False, True, 2.0 if kind == "lif" else None, surrogate.Sigmoid().spec).config

    def kernel(x_seq: Any, v0: Any, config: Any, w: Any = None, learnables: Any = None) -> Any:
        learn = learnables if learnables is not None else ((w,) if w is not None else ())
        return generic(x_seq, (v0,), config, learnables=learn)

    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    steps = draw(st.integers(1, 4))
    dtype = torch.float32
    x = torch.rand(steps, *shape, dtype=dtype, device=device)
    v0 = torch.zeros(*shape, dtype=dtype, device=device)
    w = torch.zeros((), device=device) if kind == "plif" else None
    case = draw(st.sampled_from(["int x", "v0 shape", "v0 device", "v0 dtype", "empty", "rank 0", "w"]))
    EXAMPLES[f"invalid/kernel arguments/{backend}-{device}"] += 1
    state = "states['v']"
    if case == "int x":
        ints = draw(st.sampled_from(INT_DTYPES))
        expect_typed_error(lambda: kernel(x.to(ints), v0.to(ints), config, w=w), "x_seq")
    elif case == "v0 shape":
        bad = torch.zeros(*shape, 2, dtype=dtype, device=device)
        expect_typed_error(lambda: kernel(x, bad, config, w=w), state)
    elif case == "v0 device":
        expect_typed_error(lambda: kernel(x, v0.to(META), config, w=w), state)
    elif case == "v0 dtype":
        other = torch.float64 if dtype != torch.float64 else torch.float32
        expect_typed_error(lambda: kernel(x, v0.to(other), config, w=w), state)
    elif case == "empty":
        expect_typed_error(lambda: kernel(x[:0], v0, config, w=w), "x_seq")
    elif case == "rank 0":
        expect_typed_error(lambda: kernel(torch.tensor(0.5, device=device), torch.tensor(0.0, device=device), config, w=w), "x_seq")
    elif kind == "plif":
        bad_w = draw(st.sampled_from(["missing", "meta"]))
        if bad_w == "missing":
            expect_typed_error(lambda: kernel(x, v0, config, learnables=()), "learnables")
        else:
            expect_typed_error(lambda: kernel(x, v0, config, w=torch.zeros((), device=META)), "learnables['w']")
    else:
        expect_typed_error(lambda: kernel(x, v0, config, w=torch.zeros((), device=device)), "learnables")


@FAST
@given(data=st.data())
def test_invalid_functional_arguments_raise_typed_errors(data: st.DataObject) -> None:
    EXAMPLES["invalid/functional arguments"] += 1
    draw = data.draw
    steps, batch, classes = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(2, 5))
    x = torch.randn(steps, batch, classes)
    target = torch.randint(0, classes, (batch,))
    case = draw(st.sampled_from([
        "tet rank", "tet int logits", "tet float target", "tet target shape", "tet empty",
        "kdp rank", "kdp device", "kdp kernel", "kdp sigma",
        "one_hot classes", "one_hot n", "one_hot float labels", "one_hot range",
        "delay negative", "delay rank 0", "chunk split", "msf empty", "s2a rank",
        "first_spike rank 0", "set_step_mode", "set_backend",
    ]))
    negative = draw(st.integers(-5, -1))
    tet = functional.temporal_efficient_training_cross_entropy
    calls: dict[str, tuple[Callable[[], Any], str]] = {
        "tet rank": (lambda: tet(x[0], target), "x_seq"),
        "tet int logits": (lambda: tet(x.long(), target), "x_seq"),
        "tet float target": (lambda: tet(x, target.float()), "target"),
        "tet target shape": (lambda: tet(x, torch.zeros(batch + 1, dtype=torch.long)), "target"),
        "tet empty": (lambda: tet(x[:0], target), "x_seq"),
        "kdp rank": (lambda: functional.kernel_dot_product(x, x), "x"),
        "kdp device": (lambda: functional.kernel_dot_product(x[0], x[0].to(META)), "y"),
        "kdp kernel": (lambda: functional.kernel_dot_product(x[0], x[0], "cubic"), "kernel"),
        "kdp sigma": (lambda: functional.kernel_dot_product(x[0], x[0], "gaussian", float(negative)), "sigma"),
        "one_hot classes": (lambda: functional.redundant_one_hot(target, negative + 1, 2), "num_classes"),
        "one_hot n": (lambda: functional.redundant_one_hot(target, classes, negative), "n"),
        "one_hot float labels": (lambda: functional.redundant_one_hot(target.float(), classes, 2), "labels"),
        "one_hot range": (lambda: functional.redundant_one_hot(target + classes, classes, 1), "labels"),
        "delay negative": (lambda: functional.delay(x, negative), "delay_steps"),
        "delay rank 0": (lambda: functional.delay(torch.tensor(1.0), 1), "x_seq"),
        "chunk split": (lambda: functional.chunk_multi_step_forward(negative + 1, x, torch.nn.Identity()), "split_size"),
        "msf empty": (lambda: functional.multi_step_forward(x[:0], torch.nn.Identity()), "x_seq"),
        "s2a rank": (lambda: functional.seq_to_ann_forward(x[0, 0], torch.nn.Identity()), "x_seq"),
        "first_spike rank 0": (lambda: functional.first_spike_index(torch.tensor(1.0)), "spikes"),
        "set_step_mode": (lambda: functional.set_step_mode(torch.nn.Identity(), "t"), "step_mode"),
        "set_backend": (lambda: functional.set_backend(torch.nn.Identity(), 3), "backend"),
    }
    call, argument = calls[case]
    expect_typed_error(call, argument)


def test_tet_rejects_a_target_on_another_device() -> None:
    x = torch.randn(2, 3, 4)
    target = torch.zeros(3, dtype=torch.long, device=META)
    try:
        functional.temporal_efficient_training_cross_entropy(x, target)
    except TYPED as exc:
        assert "target" in str(exc)
    except Exception as exc:  # an untyped error is the bug
        raise AssertionError(f"untyped error {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError("no error for a target on another device")

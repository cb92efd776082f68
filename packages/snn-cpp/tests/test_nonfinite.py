"""NaN and infinities: the compiled kernels compute the kernel plan in IEEE arithmetic, position for position.

Inputs hold NaN, +inf and -inf in some neurons (in the input sequence and in the initial
states). Every output and every gradient must have NaN and infinities exactly where the plan
evaluated literally with torch has them (:func:`snn_cpp_test_helpers.plan_reference`: the
forward expressions and the contract's backward recursion, terms of absent gradients and of
structurally zero coefficients skipped), and the same finite values elsewhere; the outputs must
also equal a plain autograd loop over the model description.

The gradients are compared with the plan, not with autograd: with non-finite values the plan
and autograd can differ, and so can the torch backend. Seen here: the plan drops ``s * 0`` from
a hard reset to 0 (autograd multiplies an infinite gradient by that zero); the derivative of
``relu`` at NaN is 0 in the plan (``where(relu(a) > 0, ...)``) while torch's passes the gradient
(``threshold_backward`` zeroes only where ``a <= 0``), which changes KLIF's gradients wherever its
charge turned NaN; and the torch backend multiplies an infinite gradient by the sum of a reset's
coefficients (``inf * (0 + c) = inf`` where the plan and autograd compute ``inf * 0 + inf * c``).
"""

from __future__ import annotations

import pytest
import torch
from snn_cpp_test_helpers import (
    ALL_OUTPUTS,
    assert_same_nonfinite,
    autograd_multi_step,
    configurations,
    loss_weights,
    outputs_and_gradients,
    plan_reference,
    random_inputs,
)

from snn import surrogate
from snn.plugins import get_registry
from snn_cpp.kernel import multi_step

pytestmark = pytest.mark.usefixtures("cpp_ready")

NAN, INF = float("nan"), float("inf")


def _poisoned(config, dtype, seed):
    """Inputs ``[5, 24]``: neurons 0-5 see NaN / +inf / -inf in the input at some step, neurons
    6-11 start from a NaN / +inf / -inf state; the other neurons stay finite."""
    x, states, learnables = random_inputs(config, (5, 24), dtype, seed)
    for offset, value in enumerate((NAN, INF, -INF)):
        x[1, offset] = value
        x[3, 3 + offset] = value
        for state in states:
            state[6 + offset] = value
            state[9 + offset] = value if offset else -INF
    return x, states, learnables


def _check(config, dtype, use=ALL_OUTPUTS, seed=0):
    x, states, learnables = _poisoned(config, dtype, seed)
    m = len(states)
    got_out, got_grads = outputs_and_gradients(multi_step, x, states, learnables, config, use=use)
    weights = loss_weights(x, m, True)
    incoming = [weights[g] if g in use else [None] * len(weights[g]) for g in ("spikes", "last", "seqs")]
    want_out, want_grads = plan_reference(config, x, states, learnables, incoming[0][0], incoming[1], incoming[2])
    with torch.no_grad():
        auto_out = autograd_multi_step(x, tuple(states), config, learnables=tuple(learnables), store_state_seqs=True)
    auto_out = [auto_out[0], *auto_out[1], *auto_out[2]]
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.equal(got_out[0], want_out[0]) and torch.equal(got_out[0], auto_out[0]), "spikes differ"
    for index, (a, e, r) in enumerate(zip(got_out[1:], want_out[1:], auto_out[1:])):
        assert_same_nonfinite(a, e, f"output {index + 1}", tol, tol)
        assert_same_nonfinite(a, r, f"output {index + 1} (autograd)", tol, tol)
    for index, (a, e) in enumerate(zip(got_grads, want_grads)):
        if a is None:
            assert not e.any(), f"gradient {index}: none from the kernel"
            continue
        assert_same_nonfinite(a, e, f"gradient {index}", tol, tol)


def _cases():
    registry = get_registry()
    spec = surrogate.Sigmoid().spec
    return [case for name in sorted(registry.models) for case in configurations(registry.model(name), spec)]


CASES = _cases()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "config"), CASES, ids=[c[0] for c in CASES])
def test_models(name, config, dtype):
    _check(config, dtype)


USES = [frozenset(u) for u in (("spikes",), ("last",), ("seqs",), ("spikes", "seqs"), ("last", "seqs"))]


@pytest.mark.parametrize("use", USES, ids=["+".join(sorted(u)) for u in USES])
@pytest.mark.parametrize(("name", "config"), CASES, ids=[c[0] for c in CASES])
def test_incoming_gradients(name, config, use):
    _check(config, torch.float64, use=use)


@pytest.mark.parametrize("detach", [False, True], ids=["nodetach", "detach"])
@pytest.mark.parametrize("name", surrogate.CLOSED_FORM_SURROGATES)
def test_surrogates(name, detach):
    # the surrogate sees NaN and infinite inputs (z = h - threshold): e.g. minimum() and
    # maximum() must propagate NaN as torch.clamp does (with detach_reset the surrogate's value
    # reaches the gradient through the spikes alone)
    config = get_registry().model("lif").config(surrogate.SURROGATES[name]().spec, detach)
    _check(config, torch.float32)
    _check(config, torch.float32, use=frozenset({"spikes"}))


@pytest.mark.parametrize("name", ["Sigmoid", "PiecewiseExp", "Erf"])
def test_inline_exp_without_the_vector_math_library(name, monkeypatch, tmp_path):
    """Where glibc's vector math library is missing the kernels inline their own expf: same
    NaN / inf positions, float32 accuracy (exp of huge, tiny, infinite and NaN arguments)."""
    from snn_cpp import build, ops

    candidates = build._candidate_flags
    monkeypatch.setattr(build, "_candidate_flags", lambda: [c for c in candidates() if not c[3]])
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(ops, "_kernels", {})
    build.reset()
    try:
        assert not build.toolchain().vector_math
        config = get_registry().model("plif").config(surrogate.SURROGATES[name]().spec, False)
        _check(config, torch.float32)
        x, states, learnables = random_inputs(config, (3, 40), torch.float32, seed=4)
        x = x * 40.0  # charged values far from the threshold: exp of large and small arguments
        got_out, got_grads = outputs_and_gradients(multi_step, x, states, learnables, config)
        want_out, want_grads = outputs_and_gradients(autograd_multi_step, x, states, learnables, config)
        for a, e in zip(got_out + got_grads, want_out + want_grads):
            assert_same_nonfinite(a, e, "output or gradient", 2e-5, 1e-6)
    finally:
        build.reset()


def test_constants_beyond_float32_need_float64_inputs() -> None:
    """v_threshold = 1e39 has no float32 literal: float32 inputs are refused naming it, float64
    inputs run (double literals) and equal the torch backend, and 'auto' takes torch for float32."""
    from snn import neuron
    from snn.errors import UnsupportedOperationError

    x = torch.randn(5, 7, dtype=torch.float64) * 1e39
    with pytest.raises(UnsupportedOperationError, match=r"'cpp' does not support v_threshold=1e\+39 with torch\.float32"):
        neuron.IFNode(v_threshold=1e39, step_mode="m", backend="cpp")(x.float())
    got = neuron.IFNode(v_threshold=1e39, step_mode="m", backend="cpp")(x)
    want = neuron.IFNode(v_threshold=1e39, step_mode="m", backend="torch")(x)
    assert torch.equal(got, want) and got.sum() > 0
    auto = neuron.IFNode(v_threshold=1e39, step_mode="m", backend="auto")
    assert torch.equal(auto(x.float()), neuron.IFNode(v_threshold=1e39, step_mode="m", backend="torch")(x.float()))

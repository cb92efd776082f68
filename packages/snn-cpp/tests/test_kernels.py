"""The compiled kernels against the torch backend, beyond the conformance suite.

Every registered model (iterated from the registry, so models added later are covered) with its
reset variants, ``detach_reset`` and examples, at sizes that cross several neuron blocks and
run on several threads; float64 must agree with the torch backend to rounding, float32 within
float32 tolerance on inputs where no charged value lies within rounding of the threshold.
Also: determinism across thread counts, the learnable parameters' gradients, inference saving
nothing, unsupported dtypes, and the ``auto`` choice.
"""

from __future__ import annotations

import types

import pytest
import torch
from snn_cpp_test_helpers import (
    POWER_MODEL,
    TWO_STATE_MODEL,
    configurations,
    inputs_without_near_ties,
    outputs_and_gradients,
    random_inputs,
)

import snn
from snn import surrogate
from snn.backends.torch import multi_step as torch_multi_step
from snn.errors import UnsupportedOperationError
from snn.plugins import get_registry, temporary_plugin
from snn_cpp import ops
from snn_cpp.kernel import multi_step

pytestmark = pytest.mark.usefixtures("cpp_ready")

#: Three full neuron blocks and a tail, so that blocks and threads are both exercised.
SHAPE = (6, 3 * 1024 + 37)


@snn.hookimpl
def _register_two_state(register):
    register(TWO_STATE_MODEL)
    register(POWER_MODEL)


def _all_configurations():
    """Every registered model's configurations, and the two-state and power test models'."""
    plugin = types.SimpleNamespace(snn_register_neuron_models=_register_two_state)
    with temporary_plugin(plugin, name="cpp-kernels-two-state") as registry:
        models = [registry.model(name) for name in sorted(registry.models)]
    spec = surrogate.Sigmoid().spec
    return [case for model in models for case in configurations(model, spec)]


CONFIGURATIONS = _all_configurations()


@pytest.fixture(autouse=True)
def _threads_even_for_small_inputs(monkeypatch):
    """Run every call on the thread pool, however small."""
    monkeypatch.setattr(ops, "SERIAL_WORK", 0)


def _compare(got, want, rtol, atol, what):
    for index, (a, e) in enumerate(zip(got, want)):
        if e is None or a is None:
            assert a is None and e is None or (a is not None and not a.any()) or (e is not None and not e.any()), (
                f"{what}[{index}]: one side has no gradient"
            )
            continue
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m, i=index: f"{what}[{i}]: {m}")


@pytest.mark.parametrize(("name", "config"), CONFIGURATIONS, ids=[c[0] for c in CONFIGURATIONS])
def test_float64_matches_torch_backend(name, config):
    x, states, learnables = random_inputs(config, SHAPE, torch.float64, seed=11)
    got_out, got_grads = outputs_and_gradients(multi_step, x, states, learnables, config)
    want_out, want_grads = outputs_and_gradients(torch_multi_step, x, states, learnables, config)
    assert torch.equal(got_out[0], want_out[0]), f"{name}: spikes differ"
    _compare(got_out[1:], want_out[1:], 1e-12, 1e-12, f"{name} states")
    _compare(got_grads, want_grads, 1e-10, 1e-10, f"{name} gradients")


@pytest.mark.parametrize(("name", "config"), CONFIGURATIONS[::3], ids=[c[0] for c in CONFIGURATIONS[::3]])
def test_float32_matches_torch_backend(name, config):
    x, states, learnables = inputs_without_near_ties(config, SHAPE, torch.float32, seed=5)
    got_out, got_grads = outputs_and_gradients(multi_step, x, states, learnables, config)
    want_out, want_grads = outputs_and_gradients(torch_multi_step, x, states, learnables, config)
    # no charged value lies within 1e-5 of the threshold: float32 rounding decides no spike
    assert torch.equal(got_out[0], want_out[0]), f"{name}: spikes differ"
    _compare(got_out[1:], want_out[1:], 1e-5, 1e-5, f"{name} states")
    # gradients sum over up to T steps and, for the learnable parameters, over every neuron
    _compare(got_grads, want_grads, 1e-4, 1e-4, f"{name} gradients")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_identical_on_any_number_of_threads(dtype):
    config = TWO_STATE_MODEL.config(surrogate.ATan().spec, False)
    x, states, learnables = random_inputs(config, SHAPE, dtype, seed=3)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(outputs_and_gradients(multi_step, x, states, learnables, config))
    finally:
        torch.set_num_threads(previous)
    for outputs, grads in results[1:]:
        for a, e in zip(outputs + grads, results[0][0] + results[0][1]):
            assert torch.equal(a, e), "results depend on the number of threads"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_streaming_stores_change_no_value(monkeypatch, dtype):
    """Outputs written with non-temporal stores (what large outputs get) equal those written
    through the caches, bit for bit, for every configuration: the same arithmetic, other stores.
    3109 neurons leave every row after the first unaligned and the last block a partial chunk."""
    shape = (5, 3 * 1024 + 37)
    for name, config in CONFIGURATIONS:
        x, states, learnables = random_inputs(config, shape, dtype, seed=11)
        runs = []
        for threshold in (1 << 62, 0):
            monkeypatch.setattr(ops, "STREAM_BYTES", threshold)
            outputs, grads = outputs_and_gradients(multi_step, x, states, learnables, config)
            runs.append(outputs + grads)
        for index, (cached, streamed) in enumerate(zip(*runs)):
            if cached is None or streamed is None:
                assert cached is None and streamed is None, f"{name}[{index}]: one side has no gradient"
            else:
                assert torch.equal(cached, streamed), f"{name}[{index}]: streaming stores changed values"


def test_learnable_gradients_are_exact_sums():
    """PLIF's ``w`` gradient equals the float64 sum of the per-neuron terms (fixed blocks, no atomics)."""
    registry = get_registry()
    config = registry.model("plif").config(surrogate.Sigmoid().spec, False)
    x, states, learnables = random_inputs(config, SHAPE, torch.float64, seed=2)
    _, got = outputs_and_gradients(multi_step, x, states, learnables, config)
    _, want = outputs_and_gradients(torch_multi_step, x, states, learnables, config)
    assert got[-1].shape == learnables[0].shape
    torch.testing.assert_close(got[-1], want[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("store", [False, True])
def test_inference_saves_nothing_and_training_saves_the_plan(store):
    registry = get_registry()
    config = registry.model("plif").config(surrogate.Sigmoid().spec, False, v_reset=None)
    key = ops.configuration_key(config)
    x = torch.rand(4, 10)
    p = [torch.tensor([0.2])]
    m = 1
    inference = ops.forward(x, [torch.zeros(10)], p, key, False, store)
    assert len(inference) == 1 + m + (m if store else 0)
    training = ops.forward(x, [torch.zeros(10)], p, key, True, store)
    saved = training[1 + m + (m if store else 0):]
    assert len(saved) == 1
    for a, b in zip(inference, training):
        assert torch.equal(a, b)
    with torch.no_grad():
        spikes, _, _ = multi_step(x, (torch.zeros(10),), config, learnables=(p[0].requires_grad_(),))
    assert spikes.grad_fn is None


def test_shapes_and_layouts():
    config = get_registry().model("lif").config(surrogate.Sigmoid().spec, False)
    base = torch.rand(5, 4, 6, 3, dtype=torch.float64)
    x = base.transpose(1, 3)  # [5, 3, 6, 4], not contiguous
    v0 = torch.rand(4, 6, 3, dtype=torch.float64).transpose(0, 2)
    got = multi_step(x, (v0,), config, store_state_seqs=True)
    want = torch_multi_step(x, (v0,), config, store_state_seqs=True)
    assert got[0].shape == x.shape and got[1][0].shape == v0.shape and got[2][0].shape == x.shape
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[2][0], want[2][0], rtol=1e-12, atol=1e-12)
    # T = 1 and no neurons at all
    one = multi_step(x[:1], (v0,), config)
    assert torch.equal(one[0], want[0][:1])
    empty = multi_step(torch.rand(3, 0, 2), (torch.zeros(0, 2),), config, store_state_seqs=True)
    assert empty[0].shape == (3, 0, 2) and empty[1][0].shape == (0, 2) and empty[2][0].shape == (3, 0, 2)


def test_inputs_are_not_modified():
    config = get_registry().model("plif").config(surrogate.Sigmoid().spec, True)
    x, states, learnables = random_inputs(config, (4, 50), torch.float32, seed=1)
    before = [t.clone() for t in (x, *states, *learnables)]
    outputs_and_gradients(multi_step, x, states, learnables, config)
    for old, new in zip(before, (x, *states, *learnables)):
        assert torch.equal(old, new)


def test_unsupported_dtype_names_the_alternatives():
    config = get_registry().model("lif").config(surrogate.Sigmoid().spec, False)
    x = torch.rand(3, 4, dtype=torch.bfloat16)
    with pytest.raises(UnsupportedOperationError, match="bfloat16") as info:
        multi_step(x, (torch.zeros(4, dtype=torch.bfloat16),), config)
    assert "torch" in str(info.value)
    with pytest.raises(TypeError, match="x_seq"):
        multi_step(torch.ones(3, 4, dtype=torch.int64), (torch.zeros(4, dtype=torch.int64),), config)


def test_auto_picks_cpp_on_the_cpu():
    registry = get_registry()
    config = registry.model("lif").config(surrogate.Sigmoid().spec, False)
    assert registry.auto_backend(config, "multi_step", "cpu", torch.float32) == "cpp"
    assert registry.auto_backend(config, "multi_step", "cpu", torch.float16) == "torch"
    info = registry.backend("cpp")
    assert set(info.claimed_surrogates()) == set(surrogate.CLOSED_FORM_SURROGATES)
    assert all(info.serves_model(registry.model(name), "multi_step") for name in registry.models)


def test_neuron_module_on_the_cpp_backend():
    from snn import neuron

    lif = neuron.LIFNode(tau=2.5, step_mode="m", backend="cpp")
    ref = neuron.LIFNode(tau=2.5, step_mode="m")
    x = torch.rand(8, 2, 33) * 1.5
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = lif(xa), ref(xb)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lif.v, ref.v, rtol=1e-6, atol=1e-6)


def test_configurations_equal_in_float32_only_keep_their_float64_kernels():
    lif = get_registry().model("lif")
    spec = surrogate.Sigmoid().spec
    near = [lif.config(spec, False, tau=2.0), lif.config(spec, False, tau=2.0 + 1e-12)]
    assert ops.configuration_key(near[0]) != ops.configuration_key(near[1])
    x = torch.rand(4, 9, dtype=torch.float64)
    for config in near:
        got = multi_step(x, (torch.zeros(9, dtype=torch.float64),), config, store_state_seqs=True)
        want = torch_multi_step(x, (torch.zeros(9, dtype=torch.float64),), config, store_state_seqs=True)
        torch.testing.assert_close(got[2][0], want[2][0], rtol=1e-15, atol=1e-15)


def test_the_operators_check_what_they_hand_to_c():
    """torch.ops.snn_cpp.forward / backward are public: a wrong count, shape or dtype is a typed
    error naming the argument, never a read or write out of bounds in the kernel."""
    from snn import neuron

    plif_key = ops.configuration_key(neuron.ParametricLIFNode().neuron_config())
    lif_key = ops.configuration_key(neuron.LIFNode().neuron_config())
    x = torch.randn(4, 1000)
    forward = torch.ops.snn_cpp.forward
    with pytest.raises(ValueError, match=r"learnables: configuration 'plif-\w+' expects 1, got 0"):
        forward(x, [torch.zeros(1000)], [], plif_key, False, False)
    with pytest.raises(ValueError, match=r"states: configuration 'lif-\w+' expects 1, got 0"):
        forward(x, [], [], lif_key, False, False)
    with pytest.raises(ValueError, match=r"states\[0\]: expected a CPU torch.float32 tensor of shape \[1000\], got .* shape \[1\]"):
        forward(x, [torch.zeros(1)], [], lif_key, False, False)
    with pytest.raises(TypeError, match=r"states\[0\]: expected a CPU torch.float32 tensor .* got a cpu torch.float16"):
        forward(x, [torch.zeros(1000, dtype=torch.float16)], [], lif_key, False, False)
    with pytest.raises(ValueError, match=r"x: expected a \[T, N\] CPU tensor"):
        forward(x.reshape(4, 10, 100), [torch.zeros(1000)], [], lif_key, False, False)
    spikes, v, saved = forward(x, [torch.zeros(1000)], [], lif_key, True, False)
    backward = torch.ops.snn_cpp.backward
    with pytest.raises(ValueError, match=r"grad_spikes: expected a CPU torch.float32 tensor of shape \[4, 1000\]"):
        backward([saved], None, [], [], torch.ones(4, 10), [None], [None], lif_key)
    with pytest.raises(ValueError, match=r"grad_last: configuration 'lif-\w+' expects 1, got 2"):
        backward([saved], None, [], [], None, [None, None], [None], lif_key)
    grad_x = backward([saved], None, [], [], torch.ones_like(spikes), [None], [None], lif_key)[0]
    assert grad_x.shape == (4, 1000)


def test_threads_with_small_stacks_run_the_kernels():
    """Blocks keep their states in the outputs, not in stack arrays: a PLIF layer (a learnable
    parameter, so the backward's stack sums too) over 2^18 neurons runs forward and backward in
    a thread with a 160 KiB stack (the earlier stack buffers of up to 512 KiB crashed it)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import threading, torch
        from snn import neuron
        torch.set_num_threads(1)
        layer = neuron.ParametricLIFNode(step_mode="m", backend="cpp").double()
        x = torch.rand(3, 262144, dtype=torch.float64, requires_grad=True)
        layer(x[:, :8]).sum().backward()  # compile and load in the main thread
        layer.reset()
        result = []
        def work():
            layer(x).sum().backward()
            result.append(bool(torch.isfinite(x.grad).all()))
        threading.stack_size(160 * 1024)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        print("ok" if result == [True] else "failed")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stdout, done.stderr[-2000:])


def test_openmp_threads_with_64_kib_stacks_run_the_backward():
    """Worker threads of ``OMP_STACKSIZE=64K`` run the float64 backward of models with learnable
    parameters (their sums, chunk buffers and frames stay under 64 KiB; at 72K it crashed)."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import torch
        from snn import neuron
        torch.set_num_threads(2)
        for cls in (neuron.ParametricLIFNode, neuron.KLIFNode):
            layer = cls(step_mode="m", backend="cpp").double()
            x = torch.randn(4, 70000, dtype=torch.float64, requires_grad=True)
            layer(x).sum().backward()
            assert torch.isfinite(x.grad).all()
        print("ok")
        """
    )
    environment = {**os.environ, "OMP_STACKSIZE": "64K"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stdout, done.stderr[-2000:])

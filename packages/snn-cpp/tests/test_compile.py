"""``torch.compile(fullgraph=True)`` traces through the kernels (custom operators) without graph breaks."""

from __future__ import annotations

import pytest
import torch
from snn_cpp_test_helpers import TWO_STATE_MODEL, random_inputs

from snn import functional, layer, neuron, surrogate
from snn.plugins import get_registry
from snn_cpp import ops
from snn_cpp.kernel import multi_step

pytestmark = [
    pytest.mark.usefixtures("cpp_ready"),
    # Dynamo traces through functools.lru_cache wrappers (the surrogate derivative lookup) and says so
    pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning"),
]


def _config(name, **hyper):
    return get_registry().model(name).config(surrogate.ATan().spec, False, **hyper)


def _layer(config, x, states, learnables):
    spikes, last, seqs = multi_step(x * 1.5, tuple(states), config, learnables=tuple(learnables), store_state_seqs=True)
    return spikes.sum() + 0.5 * sum(v.sum() for v in last) + 0.25 * sum(v.sum() for v in seqs)


@pytest.mark.parametrize("name", ["if", "lif", "plif"])
def test_no_graph_breaks(name):
    torch._dynamo.reset()
    config = _config(name, v_reset=-0.1)
    x, states, learnables = random_inputs(config, (4, 3, 5), torch.float32, seed=1)
    x.requires_grad_()
    explanation = torch._dynamo.explain(lambda a: _layer(config, a, states, learnables))(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("name", ["lif", "plif", "two_state"])
def test_compiled_forward_and_backward_match_eager(name):
    torch._dynamo.reset()
    config = TWO_STATE_MODEL.config(surrogate.ATan().spec, False) if name == "two_state" else _config(name)
    x, states, learnables = random_inputs(config, (5, 2, 7), torch.float32, seed=3)
    leaves = [t.clone().requires_grad_() for t in (x, *states, *learnables)]
    m = len(states)

    def run(*args):
        return _layer(config, args[0], args[1 : 1 + m], args[1 + m :])

    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    got = compiled(*leaves)
    got_grads = torch.autograd.grad(got, leaves)
    want = run(*leaves)
    want_grads = torch.autograd.grad(want, leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def _network(backend):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Linear(4, 8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m", backend=backend),
        layer.Linear(8, 3),
        neuron.ParametricLIFNode(v_threshold=0.4, v_reset=None, step_mode="m", backend=backend),
    )
    functional.set_step_mode(net, "m")
    return net


def _compiled_inference(net, x):
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    functional.reset_net(net)
    with torch.no_grad():
        return compiled, compiled(x)


def test_compiled_network():
    """A network of cpp neurons compiles as one graph (the kernels are custom operators)."""
    x = torch.rand(6, 2, 4) * 2.0
    torch._dynamo.reset()
    net = _network("cpp")
    functional.reset_net(net)
    with torch.no_grad():
        want = net(x)
    compiled, got = _compiled_inference(net, x)
    assert torch.equal(got, want)
    functional.reset_net(net)
    compiled(x).sum().backward()
    assert net[3].w.grad is not None and torch.isfinite(net[3].w.grad).all()


def test_opcheck_forward_and_backward():
    """PyTorch's own checks of the operators: schema, fake tensors, autograd registration."""
    config = TWO_STATE_MODEL.config(surrogate.Sigmoid().spec, False)
    key = ops.configuration_key(config)
    x = torch.rand(3, 6, requires_grad=True)
    states = [torch.rand(6, requires_grad=True), torch.rand(6, requires_grad=True)]
    learnables = [torch.tensor([0.4], requires_grad=True), torch.tensor([0.2], requires_grad=True)]
    torch.library.opcheck(torch.ops.snn_cpp.forward.default, (x, states, learnables, key, True, True))
    plain = (x.detach(), [s.detach() for s in states], [p.detach() for p in learnables], key, False, False)
    torch.library.opcheck(torch.ops.snn_cpp.forward.default, plain)
    out = torch.ops.snn_cpp.forward(x.detach(), [s.detach() for s in states], [p.detach() for p in learnables], key, True, True)
    saved = out[5:]
    grads = (torch.rand(3, 6), [torch.rand(6), None], [None, torch.rand(3, 6)])
    torch.library.opcheck(
        torch.ops.snn_cpp.backward.default,
        (saved, None, [s.detach() for s in states], [p.detach() for p in learnables], *grads, key),
    )


def test_fullgraph_compile_as_the_first_use_in_a_process():
    """A fresh process whose first call is the compiled network: the kernel was imported inside
    the traced code (importlib cannot be traced) and fullgraph=True failed; the backend choice
    now imports it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import torch
        from snn import neuron
        layer = neuron.LIFNode(step_mode="m", backend="cpp")
        x = torch.randn(4, 3, 5, requires_grad=True)
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        compiled(x).sum().backward()
        print("ok", bool(torch.isfinite(x.grad).all()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok True"), (done.returncode, done.stderr[-2000:])

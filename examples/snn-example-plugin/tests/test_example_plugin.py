"""Tests of the example plugin: snn's backend conformance suite on ``example``, the
``hinge_rate`` loss against a plain loop, the entry point, and use through ``snn train``."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import sys
from pathlib import Path

import pytest
import torch

import snn_example_plugin.plugin as example_plugin
from snn import neuron
from snn.plugins import get_registry, temporary_plugin
from snn.testing import BackendConformance
from snn_example_plugin.losses import hinge_rate

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _installed() -> bool:
    return any(ep.name == "example" for ep in importlib.metadata.entry_points(group="snn"))


class TestExampleBackend(BackendConformance):
    """snn's conformance suite: the plain-loop kernel against torch's."""

    backend = "example"
    # Register the plugin for the suite unless it is installed (then the
    # entry point does it).
    plugin = None if _installed() else example_plugin
    plugin_name = "example"


def test_entry_point_is_declared() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert data["project"]["entry-points"]["snn"] == {"example": "snn_example_plugin.plugin"}
    if _installed():
        (entry,) = [ep for ep in importlib.metadata.entry_points(group="snn") if ep.name == "example"]
        assert entry.load() is example_plugin
        registry = get_registry()
        assert registry.backend("example").provenance.distribution == "snn-example-plugin"
        assert registry.loss("hinge_rate").provenance.plugin == "example"


def _registered():
    return temporary_plugin(example_plugin, name="example") if not _installed() else _NoOp()


class _NoOp:
    def __enter__(self):
        return get_registry()

    def __exit__(self, *exc: object) -> None:
        return None


def test_registration_metadata() -> None:
    from snn.surrogate import Sigmoid

    with _registered() as registry:
        info = registry.backend("example")
        assert set(info.kernels) == {"multi_step"}
        assert info.models == frozenset({"lif"})
        assert info.surrogates == frozenset(example_plugin.SURROGATES)
        assert info.unavailable_reason() is None
        assert registry.loss("hinge_rate").metadata["signature"] == "sequence_classification"
        assert registry.models["adaptive_lif"].provenance.plugin == "example"
        # "auto" never prefers the teaching backend over torch
        lif = neuron.LIFNode().neuron_config()
        assert registry.auto_backend(lif, "multi_step", "cpu", torch.float32) != "example"
        # a hand-written kernel serves only the models it names
        adaptive = registry.model("adaptive_lif").config(Sigmoid().spec)
        assert not info.serves_config(adaptive) and registry.backend("torch").serves_config(adaptive)


def test_lif_node_on_the_example_backend_matches_torch() -> None:
    with _registered():
        torch.manual_seed(0)
        x = torch.rand(6, 4, 5) * 2
        outputs = []
        for backend in ("torch", "example"):
            node = neuron.LIFNode(step_mode="m", backend=backend)
            x_leaf = x.clone().requires_grad_(True)
            spikes = node(x_leaf)
            (spikes * torch.arange(6.0).view(6, 1, 1)).sum().backward()
            outputs.append((spikes.detach(), node.v.detach(), x_leaf.grad))
        assert torch.equal(outputs[0][0], outputs[1][0])
        assert 0 < float(outputs[0][0].mean()) < 1
        torch.testing.assert_close(outputs[0][1], outputs[1][1])
        torch.testing.assert_close(outputs[0][2], outputs[1][2])


def test_kernel_refuses_bad_arguments_naming_them() -> None:
    """The contract's checks, then what the backend registered (with the backends that would serve)."""
    from snn.errors import UnsupportedOperationError
    from snn.surrogate import Rect
    from snn_example_plugin.kernels import lif_multi_step

    lif = neuron.LIFNode().neuron_config()
    x, v0 = torch.rand(3, 4), torch.zeros(4)
    with _registered() as registry:
        with pytest.raises(TypeError, match="x_seq: expected a floating-point tensor, got torch.int32"):
            lif_multi_step(x.to(torch.int32), (v0.to(torch.int32),), lif)
        with pytest.raises(ValueError, match=r"states\['v'\]: expected shape \(4,\)"):
            lif_multi_step(x, (torch.zeros(5),), lif)
        with pytest.raises(ValueError, match="T >= 1"):
            lif_multi_step(x[:0], (v0,), lif)
        with pytest.raises(ValueError, match="learnables: model 'lif' has learnable parameters"):
            lif_multi_step(x, (v0,), lif, learnables=(torch.zeros(()),))
        plif = neuron.ParametricLIFNode().neuron_config()
        with pytest.raises(UnsupportedOperationError, match="neuron model 'plif'") as caught:
            lif_multi_step(x, (v0,), plif, learnables=(torch.zeros(()),))
        assert "torch" in caught.value.alternatives
        with pytest.raises(UnsupportedOperationError, match="dtype torch.float16") as caught:
            lif_multi_step(x.half(), (v0.half(),), lif)
        assert "torch" in caught.value.alternatives and "example" not in caught.value.alternatives
        with pytest.raises(UnsupportedOperationError, match="surrogate 'Rect'") as caught:
            lif_multi_step(x, (v0,), neuron.LIFNode(surrogate_function=Rect()).neuron_config())
        assert "torch" in caught.value.alternatives
        assert registry is not None


def test_adaptive_lif_matches_its_equations_written_out() -> None:
    """The plugin's own model on the torch backend (fused, derived backward) against a plain loop."""
    from snn.surrogate import ATan
    from snn_example_plugin.neuron import AdaptiveLIFNode

    with _registered():
        torch.manual_seed(3)
        x = (torch.rand(9, 4, 3, dtype=torch.float64) * 2.5).requires_grad_()
        node = AdaptiveLIFNode(tau=2.5, tau_w=3.0, a=0.3, b=0.4, v_reset=-0.1, surrogate_function=ATan(),
                               step_mode="m", store_v_seq=True)
        spikes = node(x)
        assert 0 < float(spikes.detach().mean()) < 1
        (spikes * torch.linspace(0.5, 1.5, 3, dtype=torch.float64)).sum().backward()
        kernel = (spikes.detach(), node.v.detach(), node.w.detach(), node.v_seq.detach(), x.grad.clone())

        x.grad = None
        sg = ATan()
        v = torch.full((4, 3), -0.1, dtype=torch.float64)
        w = torch.zeros((4, 3), dtype=torch.float64)
        out, vs = [], []
        for t in range(9):
            h = v + (x[t] - (v + 0.1) - w) / 2.5
            w_charged = w + (0.3 * (v + 0.1) - w) / 3.0
            s = sg(h - 1.0)
            v = s * -0.1 + (1.0 - s) * h
            w = w_charged + 0.4 * s
            out.append(s)
            vs.append(v)
        loop_spikes = torch.stack(out)
        (loop_spikes * torch.linspace(0.5, 1.5, 3, dtype=torch.float64)).sum().backward()
        assert torch.equal(kernel[0], loop_spikes.detach())
        torch.testing.assert_close(kernel[1], v.detach())
        torch.testing.assert_close(kernel[2], w.detach())
        torch.testing.assert_close(kernel[3], torch.stack(vs).detach())
        torch.testing.assert_close(kernel[4], x.grad)


def _hinge_loop(y_seq: torch.Tensor, target: torch.Tensor, margin: float) -> float:
    rates = y_seq.double().mean(0)
    total, count = 0.0, 0
    for n in range(rates.shape[0]):
        for j in range(rates.shape[1]):
            if j != int(target[n]):
                total += max(0.0, margin - float(rates[n, int(target[n])] - rates[n, j]))
                count += 1
    return total / count


@pytest.mark.parametrize("margin", [0.5, 0.2])
def test_hinge_rate_matches_a_loop(margin: float) -> None:
    torch.manual_seed(1)
    y_seq = (torch.rand(4, 6, 5) > 0.5).float()
    target = torch.randint(0, 5, (6,))
    assert float(hinge_rate(y_seq, target, margin)) == pytest.approx(_hinge_loop(y_seq, target, margin), rel=1e-6)
    # the gradient raises the true class and lowers violating ones
    scores = torch.rand(3, 2, 3, requires_grad=True)
    hinge_rate(scores, torch.tensor([0, 2])).backward()
    assert float(scores.grad[:, 0, 0].sum()) <= 0 and float(scores.grad[:, 1, 2].sum()) <= 0


def test_hinge_rate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="y_seq"):
        hinge_rate(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="target"):
        hinge_rate(torch.zeros(2, 3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="class indices"):
        hinge_rate(torch.zeros(2, 3, 4), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="margin"):
        hinge_rate(torch.zeros(2, 3, 4), torch.tensor([0, 1, 2]), margin=0.0)


def test_snn_train_uses_the_plugin(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from snn.train import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([
        "--backend", "example", "--loss", "hinge_rate", "--epochs", "1", "--T", "2", "--limit", "100",
        "--hidden", "16", "--no-plots", "--out", str(tmp_path), "--json",
    ])
    stdout = io.StringIO()
    with _registered():
        assert command.run(args, stdout=stdout, stderr=io.StringIO()) == 0
    summary = json.loads(stdout.getvalue().splitlines()[-1])
    assert summary["backend"] == "example" and summary["loss"] == "hinge_rate"

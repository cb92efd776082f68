"""The SpikingJelly tutorials rewritten for snn (``examples/tutorials``), run on a few batches each.

The scripts are loaded from their files (they are not a package) and run through their
``main(argv)`` with small settings; what they record is checked against a computation written
out here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the tutorials use scikit-learn's bundled digits (the demo extra)")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

TUTORIALS = Path(__file__).resolve().parent.parent / "examples" / "tutorials"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"snn_tutorial_{name}", TUTORIALS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lif_fc() -> ModuleType:
    return _load("lif_fc_digits")


@pytest.fixture(scope="module")
def conv() -> ModuleType:
    return _load("conv_digits")


@pytest.fixture(scope="module")
def rsnn() -> ModuleType:
    return _load("rsnn_sequential_digits")


def _finite(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(v) for v in values)


# -- LIF fully connected ----------------------------------------------------------------------


def test_lif_fc_trains_and_resumes(lif_fc: ModuleType, tmp_path: Path) -> None:
    argv = ["-T", "6", "-b", "16", "-epochs", "1", "-max-batches", "3", "-out-dir", str(tmp_path), "-device", "cpu"]
    net, summary = lif_fc.train(lif_fc.parse_args(argv))
    assert len(summary["train_losses"]) == 3 and _finite(summary["train_losses"])
    out_dir = Path(summary["out_dir"])
    checkpoint = torch.load(out_dir / "checkpoint_latest.pth", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert torch.equal(checkpoint["net"]["layer.1.weight"], net.layer[1].weight)
    resumed_net, resumed = lif_fc.train(
        lif_fc.parse_args([*argv[:5], "2", *argv[6:], "-resume", str(out_dir / "checkpoint_latest.pth")])
    )
    assert resumed["epoch"] == 1 and len(resumed["train_losses"]) == 3
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="is not a checkpoint written by this script"):
        lif_fc.train(lif_fc.parse_args([*argv, "-resume", str(tmp_path / "broken.pth")]))


def test_lif_fc_records_the_output_layer_with_its_forward_hook(lif_fc: ModuleType, tmp_path: Path) -> None:
    """The tutorial's hook sets ``node.v_seq = []`` and appends to it at every step.

    This needs neurons that leave ``v_seq`` alone outside multi-step mode with ``store_v_seq``
    (the reference's behaviour).
    """
    T = 12
    argv = ["-T", str(T), "-b", "16", "-epochs", "1", "-max-batches", "2", "-out-dir", str(tmp_path)]
    result = lif_fc.main([*argv, "-device", "cpu", "-plot"])
    v, s = result["v_t_array"], result["s_t_array"]
    assert v.shape == (T, 10) and s.shape == (T, 10)
    out_dir = Path(result["out_dir"])
    np.testing.assert_array_equal(np.load(out_dir / "v_t_array.npy"), v)
    np.testing.assert_array_equal(np.load(out_dir / "s_t_array.npy"), s)
    assert (out_dir / "v_t_array.png").stat().st_size > 0 and (out_dir / "s_t_array.png").stat().st_size > 0
    np.testing.assert_allclose(result["firing_rate"].ravel(), s.mean(0), rtol=1e-6)

    # the same recording, recomputed by hand: Poisson input, Linear without bias, LIF (tau, hard reset to 0)
    net = lif_fc.SNN(tau=2.0)
    img = torch.rand(1, 8, 8)
    torch.manual_seed(7)
    recorded = lif_fc.record_output_layer(net, lif_fc.encoding.PoissonEncoder(), img, T, "cpu")
    torch.manual_seed(7)
    weight = net.layer[1].weight.detach()
    potential = torch.zeros(1, 10)
    potentials, spikes = [], []
    for _ in range(T):
        x = (torch.rand_like(img) <= img).float().flatten(1)
        h = potential + (x @ weight.T - potential) / 2.0
        spike = (h >= 1.0).float()
        potential = h * (1.0 - spike)
        potentials.append(potential)
        spikes.append(spike)
    # one matrix product per step in both (same shapes); the update order may differ in rounding
    np.testing.assert_allclose(recorded["v_t_array"], torch.cat(potentials).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(recorded["s_t_array"], torch.cat(spikes).numpy())


# -- convolutional ----------------------------------------------------------------------------


def test_conv_trains_and_draws_the_spiking_encoder(conv: ModuleType, tmp_path: Path) -> None:
    argv = ["-T", "2", "-b", "16", "-epochs", "1", "-max-batches", "3", "-channels", "8", "-out-dir", str(tmp_path)]
    summary = conv.main([*argv, "-device", "cpu"])
    assert len(summary["train_losses"]) == 3 and _finite(summary["train_losses"])
    checkpoint = Path(summary["out_dir"]) / "checkpoint_latest.pth"
    drawn = conv.main([*argv, "-device", "cpu", "-resume", str(checkpoint), "-save-es", str(tmp_path), "-max-images", "2"])
    names = sorted(Path(path).relative_to(tmp_path / "visualization").as_posix() for path in drawn["files"])
    assert names == ["0/input.png", "0/s_0.png", "0/s_1.png", "1/input.png", "1/s_0.png", "1/s_1.png"]
    assert all(Path(path).stat().st_size > 0 for path in drawn["files"])


def test_conv_network_shapes(conv: ModuleType) -> None:
    net = conv.CSNN(T=3, channels=4)
    out = net(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    assert torch.all((out >= 0) & (out <= 1))  # firing rates
    spikes = net.spiking_encoder()(torch.rand(3, 5, 1, 8, 8))
    assert spikes.shape == (3, 5, 4, 8, 8) and set(spikes.unique().tolist()) <= {0.0, 1.0}


# -- recurrent, sequential digits -------------------------------------------------------------


@pytest.mark.parametrize("model", ["plain", "ss", "fb"])
def test_rsnn_models_train(rsnn: ModuleType, tmp_path: Path, model: str) -> None:
    argv = ["-model", model, "-b", "16", "-epochs", "1", "-max-batches", "3", "-out-dir", str(tmp_path)]
    summary = rsnn.main([*argv, "-device", "cpu"])
    assert len(summary["train_losses"]) == 3 and _finite(summary["train_losses"])
    net = summary["net"]
    if model == "ss":
        synapse = net.fc[2]
        assert synapse.step_mode == "m"
        assert synapse.w.item() != 0.0  # tau = 2 starts at w = -ln(2 - 1) = 0; training moved it
    if model == "fb":
        recurrent = net.fc[1]
        # set_step_mode leaves the container's neuron in single-step mode; the container loops it
        assert recurrent.step_mode == "m" and recurrent.sub_module.step_mode == "s"


def test_rsnn_reads_images_column_by_column(rsnn: ModuleType) -> None:
    img = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    seq = rsnn.as_sequence(img)
    assert seq.shape == (8, 2, 8)
    assert torch.equal(seq[3, 1], img[1, 0, :, 3])  # step t is column t

"""Tests of ``snn train`` (:mod:`snn.train`): data, models, the loop, plots and the command.

Runs are kept tiny (a few hundred images, T <= 4, one epoch) except one moderately fast
accuracy check; no test asserts anything about timing.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn", reason='snn train needs the demo extra: pip install "snn-core[demo]"')
pytest.importorskip("matplotlib", reason='snn train needs the demo extra: pip install "snn-core[demo]"')

import snn
from snn.train import (
    TrainConfig,
    command,
    train,
)
from snn.train.data import batch_indices, encode, load_digits_split
from snn.train.extras import DemoDependencyError, import_demo_module
from snn.train.models import build_layers, default_neuron_factory, record_spikes, spiking_layers
from snn.train.plots import PLOT_FILES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--epochs", "1", "--T", "2", "--limit", "200", "--hidden", "32", "--batch-size", "50"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def run_command(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = command.run(parse(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def has_learner(name: str) -> bool:
    from snn.plugins import get_registry

    return name in get_registry().learners


# -- data ---------------------------------------------------------------------------------------


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    a = load_digits_split(seed=3)
    b = load_digits_split(seed=3)
    c = load_digits_split(seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    assert len(a.y_train) + len(a.y_test) == 1797
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.dtype == torch.float32
    assert float(a.x_train.min()) >= 0.0 and float(a.x_train.max()) <= 1.0
    # every class is split about 80 / 20
    for cls in range(10):
        n_test = int((a.y_test == cls).sum())
        n_all = n_test + int((a.y_train == cls).sum())
        assert abs(n_test - 0.2 * n_all) <= 1
    # together the two sets hold every image once: compare sorted rows with the dataset's
    from sklearn.datasets import load_digits

    everything = torch.cat([a.x_train, a.x_test]).flatten(1)
    original = torch.as_tensor(load_digits().data, dtype=torch.float32) / 16.0
    assert torch.equal(_sorted_rows(everything), _sorted_rows(original))


def _sorted_rows(rows: torch.Tensor) -> torch.Tensor:
    order = sorted(range(len(rows)), key=lambda i: rows[i].tolist())
    return rows[order]


def test_split_limit_and_bad_arguments() -> None:
    small = load_digits_split(seed=0, limit=100)
    assert len(small.y_train) + len(small.y_test) == 100
    assert set(small.y_test.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(seed=0, test_fraction=1.5)
    with pytest.raises(ValueError, match="limit"):
        load_digits_split(seed=0, limit=5)


def test_encode_direct_and_rate() -> None:
    x = torch.tensor([[0.0, 0.25, 1.0]]).repeat(4, 1)
    direct = encode(x, 3, "direct")
    assert direct.shape == (3, 4, 3)
    assert torch.equal(direct, x.unsqueeze(0).repeat(3, 1, 1))
    generator = torch.Generator().manual_seed(0)
    rate = encode(x, 4000, "rate", generator)
    assert set(rate.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(rate.mean(0), x, atol=0.03)
    assert float(rate[:, :, 0].sum()) == 0.0 and float(rate[:, :, 2].min()) == 1.0
    again = encode(x, 4000, "rate", torch.Generator().manual_seed(0))
    assert torch.equal(rate, again)
    with pytest.raises(ValueError, match="encoding"):
        encode(x, 2, "latency")
    with pytest.raises(ValueError, match="T"):
        encode(x, 0, "direct")


def test_batch_indices_cover_everything_once() -> None:
    batches = list(batch_indices(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert torch.equal(torch.cat(list(batch_indices(5, 2, shuffle=False))), torch.arange(5))


# -- models ---------------------------------------------------------------------------------------


def _manual_lif(x_seq: torch.Tensor) -> torch.Tensor:
    """LIF with tau=2, decay_input, v_reset=0, threshold 1: an independent loop."""
    v = torch.zeros_like(x_seq[0])
    spikes = []
    for x in x_seq:
        h = v + (x - v) / 2.0
        s = (h >= 1.0).to(x.dtype)
        v = h * (1.0 - s)
        spikes.append(s)
    return torch.stack(spikes)


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_record_spikes_matches_a_manual_forward(step_mode: str) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(*build_layers("mlp", step_mode, default_neuron_factory(step_mode), hidden=16))
    with torch.no_grad():
        model[1].weight.mul_(6.0)  # make the hidden layer fire
        model[3].weight.mul_(6.0)
    x_seq = torch.rand(5, 3, 1, 8, 8)
    recorded = record_spikes(model, x_seq, step_mode)
    assert list(recorded) == ["LIFNode[2]", "LIFNode[4]"]

    def linear(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
        # The matrix shapes the model itself multiplies: one product of T*N rows in step mode
        # 'm', one of N rows per step in 's'. BLAS may round other shapes differently (e.g. on
        # AVX-512 CPUs), which could move a potential across the threshold.
        if step_mode == "m":
            return F.linear(x, module.weight, module.bias)
        return torch.stack([F.linear(x_t, module.weight, module.bias) for x_t in x])

    with torch.no_grad():
        hidden = _manual_lif(linear(x_seq.flatten(2), model[1]))
        out = _manual_lif(linear(hidden, model[3]))
    assert 0.0 < float(hidden.mean()) < 1.0
    assert torch.equal(recorded["LIFNode[2]"], hidden)
    assert torch.equal(recorded["LIFNode[4]"], out)
    assert model.training  # the mode is restored


def test_conv_layers_shapes() -> None:
    model = torch.nn.Sequential(*build_layers("conv", "m", default_neuron_factory("m"), channels=4))
    assert [name for name, _ in spiking_layers(model)] == ["LIFNode[2]", "LIFNode[6]", "LIFNode[10]"]
    snn.functional.reset_net(model)
    assert model(torch.rand(3, 2, 1, 8, 8)).shape == (3, 2, 10)
    with pytest.raises(ValueError, match="model"):
        build_layers("resnet", "m", default_neuron_factory("m"))


# -- the command ---------------------------------------------------------------------------------


def test_run_json_metrics_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run_command([*TINY, "--out", str(out), "--json"])
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "epochs", "seconds", "backend", "learner"):
        assert key in summary
    assert summary["epochs"] == 1 and summary["backend"] == "torch" and summary["learner"] == "bptt"
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["seconds"] > 0
    assert summary["n_train"] + summary["n_test"] == 200
    assert "epoch 1/1" in stderr  # the epoch lines go to stderr with --json
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == summary["test_accuracy"]
    assert len(metrics["history"]) == 1
    assert set(metrics["firing_rates"]) == {"LIFNode[2]", "LIFNode[4]"}
    for name in PLOT_FILES.values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(summary["files"]) == sorted(["model.pt", "checkpoint.pt", "metrics.json", *PLOT_FILES.values()])
    assert metrics["files"] == summary["files"]
    assert "seconds" not in metrics and all("seconds" not in h for h in metrics["history"])


def test_run_without_json_prints_epoch_lines_and_summary(tmp_path: Path) -> None:
    code, stdout, _ = run_command([*TINY, "--out", str(tmp_path), "--no-plots", "--model", "conv"])
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("epoch 1/1") and "test" in lines[0]
    assert lines[-2].startswith("test accuracy") and "model conv" in lines[-2]
    assert not (tmp_path / PLOT_FILES["learning_curves"]).exists()
    assert (tmp_path / "metrics.json").exists()


def test_same_seed_same_result_other_seed_differs() -> None:
    # large enough that the network starts firing within the epoch (a silent network has the
    # same loss, ln 10, for every seed)
    config = dict(epochs=1, limit=900, lr=1e-2, batch_size=32, encoding="rate")
    first = train(TrainConfig(seed=5, **config))
    second = train(TrainConfig(seed=5, **config))
    other = train(TrainConfig(seed=6, **config))
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]
    assert first.test_accuracy == second.test_accuracy
    assert [r.train_loss for r in first.history] != [r.train_loss for r in other.history]


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    train(TrainConfig(epochs=1, T=1, limit=100, hidden=8, threads=1))
    assert torch.get_num_threads() == before


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    train(TrainConfig(epochs=1, T=1, limit=100, hidden=8, progress=True))
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and captured.out == ""


def test_accuracy_well_above_chance_after_three_epochs() -> None:
    result = train(TrainConfig(epochs=3))
    assert result.test_accuracy >= 0.75  # chance is 0.1; the defaults (15 epochs) reach about 0.98
    assert result.history[-1].train_loss < result.history[0].train_loss


@pytest.mark.parametrize("learner", ["ottt", "sltt", "fptt"])
def test_online_learners_train(learner: str, tmp_path: Path) -> None:
    if not has_learner(learner):
        pytest.skip(f"learner {learner!r} needs snn-online: pip install \"snn-core[online]\"")
    code, stdout, stderr = run_command(
        ["--learner", learner, "--epochs", "2", "--T", "4", "--limit", "600", "--hidden", "64",
         "--lr", "0.01", "--out", str(tmp_path), "--json"]
    )
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["learner"] == learner
    assert summary["test_accuracy"] > 0.5  # chance is 0.1; these settings give about 0.8
    assert all(rate > 0 for rate in summary["firing_rates"].values())


def test_loss_from_a_plugin_is_accepted(temporary_plugin, tmp_path: Path) -> None:
    calls = []

    def squared_rate(y_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(y_seq.shape))
        return F.mse_loss(y_seq.mean(0), F.one_hot(target, y_seq.shape[-1]).to(y_seq.dtype))

    @snn.hookimpl
    def snn_register_losses(register):
        register("squared_rate", squared_rate, signature="sequence_classification")

    temporary_plugin(types.SimpleNamespace(snn_register_losses=snn_register_losses), name="squared")
    code, stdout, stderr = run_command([*TINY, "--loss", "squared_rate", "--out", str(tmp_path), "--json"])
    assert code == 0, stderr
    assert json.loads(stdout.splitlines()[-1])["loss"] == "squared_rate"
    assert calls and calls[0] == (2, 50, 10)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--loss", "nope"], ["unknown loss 'nope'", "'ce_rate'", "'mse_count'", "'tet'"]),
        (["--loss", "spike_similar"], ["'spike_similar'", "sequence_classification", "'ce_rate'"]),
        (["--backend", "nope"], ["unknown backend 'nope'", "'torch'"]),
        (["--learner", "nope"], ["unknown learner 'nope'", "'bptt'", "built in"]),
        (["--lr", "0"], ["lr: expected a finite number > 0, got 0.0"]),
        (["--lr", "1e38"], ["lr: expected at most 3.403e+37 (Adam's first step", "got 1e+38"]),
        (["--T", "0"], ["T: expected an integer >= 1, got 0"]),
        (["--limit", "3"], ["--limit: expected an integer from 20", "got 3"]),
    ],
)
def test_bad_settings_are_reported(argv: list[str], expected: list[str], tmp_path: Path) -> None:
    code, stdout, stderr = run_command([*TINY, *argv, "--out", str(tmp_path / "x"), "--json"])
    assert code == 2
    assert stderr.startswith("snn train: error: ")
    for text in expected:
        assert text in stderr
    error = json.loads(stdout.strip().splitlines()[-1])
    assert set(error) == {"error", "error_type"}
    assert not (tmp_path / "x").exists()


def test_the_largest_learning_rate_is_one_adam_can_take() -> None:
    """Adam's scalar step factor, lr / (1 - 0.9), is a float32 number at MAX_LR; torch refuses more."""
    from snn.train.config import MAX_LR

    weight = torch.nn.Parameter(torch.zeros(3))
    weight.grad = torch.ones(3)
    torch.optim.Adam([weight], lr=MAX_LR).step()
    assert torch.isfinite(weight).all() and float(weight.detach()[0]) == pytest.approx(-MAX_LR, rel=1e-6)  # a step of lr
    weight.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.optim.Adam([weight], lr=MAX_LR * 1.001).step()


def test_unknown_model_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        parse(["--model", "resnet"])


def test_missing_demo_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DemoDependencyError, match=r'pip install "snn-core\[demo\]"') as info:
        import_demo_module("sklearn.datasets")
    assert "scikit-learn" in str(info.value) and isinstance(info.value.__cause__, ImportError)
    code, _, stderr = run_command([*TINY, "--out", str(tmp_path)])
    assert code == 1
    assert 'pip install "snn-core[demo]"' in stderr


@pytest.mark.parametrize("limit", [20, 37, 300])
def test_limit_takes_a_class_balanced_subset(limit: int) -> None:
    """Every class gets limit // 10 images or one more, and so a test image, whatever the seed."""
    from snn.train.data import load_digits_split

    for seed in range(25):
        split = load_digits_split(seed, limit=limit)
        counts = torch.bincount(split.y_train, minlength=10) + torch.bincount(split.y_test, minlength=10)
        assert int(counts.sum()) == limit
        assert int(counts.min()) >= limit // 10 and int(counts.max()) <= -(-limit // 10)
        assert len(torch.unique(split.y_test)) == 10


def test_stale_temporaries_are_only_the_run_files_of_a_killed_write(tmp_path: Path) -> None:
    """A killed run leaves ``.tmp-<run file>.<pid>``; a user's own ``.tmp-*`` entries stay."""
    from snn.train.checkpoint import remove_stale_temporaries

    stale = [".tmp-checkpoint.pt.4242", ".tmp-model.pt.7", ".tmp-metrics.json.123"]
    kept = [".tmp-notes.txt", ".tmp-checkpoint.pt.backup", ".tmp-model.pt."]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".tmp-cache").mkdir()
    (tmp_path / ".tmp-checkpoint.pt.99").mkdir()
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".tmp-cache", ".tmp-checkpoint.pt.99"])


@pytest.mark.parametrize("learner", ["bptt", "ottt", "sltt", "fptt"])
def test_a_silent_network_has_the_loss_of_uniform_logits(learner: str) -> None:
    """All weights 0: no neuron fires, the rate logits are 0 and the cross-entropy is ln 10 per
    image, for BPTT and for the online learners (whose per-step losses are summed over T steps
    and divided by T)."""
    import math

    from snn.train.resolve import resolve_learner, resolve_loss
    from snn.train.runner import Runner, encode_batch

    if learner != "bptt" and not has_learner(learner):
        pytest.skip(f"learner {learner!r} needs snn-online")
    config = TrainConfig(epochs=1, T=4, limit=100, hidden=8, learner=learner)
    runner = Runner(config, torch.device("cpu"), resolve_loss(config.loss), resolve_learner(config.learner),
                    backend=lambda model, step_mode: "torch")
    with torch.no_grad():
        for parameter in runner.model.parameters():
            parameter.zero_()
    data = load_digits_split(0, limit=100)
    loss, _ = runner.train_batch(encode_batch(config, data.x_train[:8], None), data.y_train[:8])
    assert loss == pytest.approx(math.log(10.0), rel=1e-6)


def test_the_epoch_loss_is_the_mean_of_the_batch_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.train.runner import Runner

    losses: list[float] = []
    train_batch = Runner.train_batch

    def recorded(self: Runner, x_seq: torch.Tensor, y: torch.Tensor, loss_scale: float = 1.0) -> tuple[float, int]:
        result = train_batch(self, x_seq, y, loss_scale)
        losses.append(result[0])
        return result

    monkeypatch.setattr(Runner, "train_batch", recorded)
    result = train(TrainConfig(epochs=1, T=2, limit=100, hidden=8, batch_size=16, lr=0.05))
    assert len(losses) == 5  # 80 training images in batches of 16
    assert result.history[0].train_loss == pytest.approx(sum(losses) / len(losses), rel=1e-12)


def test_split_sizes_per_class_round_the_test_fraction() -> None:
    """Each class gives round(0.2 n) test images: 359 of the 1797 digits (a floor gives 355)."""
    split = load_digits_split(seed=0)
    tests = torch.bincount(split.y_test, minlength=10)
    everything = tests + torch.bincount(split.y_train, minlength=10)
    assert tests.tolist() == [round(0.2 * int(n)) for n in everything]
    assert len(split.y_test) == 359

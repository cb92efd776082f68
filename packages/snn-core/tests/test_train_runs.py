"""Runs of ``snn train`` as files: checkpoints, exact resume after SIGKILL, model.pt, ``snn evaluate``,
and the command's checks of ``--out`` and its messages.

Killed runs are real processes (``python -c`` running ``snn train``) that send themselves SIGKILL at
a chosen moment: in the middle of an epoch (the n-th training batch), or while a checkpoint is
being written (after its temporary file exists, before the rename). Resuming them must give the
same bits as a run that never stopped: the same arithmetic on the same inputs, so bit identity is
the right assertion here. Runs are small (a few hundred images, T = 4, a few epochs).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason='snn train needs the demo extra: pip install "snn-core[demo]"')

from snn.train import RunFileError, TrainConfig, command, evaluate, load_checkpoint, load_model, train
from snn.train.checkpoint import CHECKPOINT_FILE, MODEL_FILE
from snn.train.data import load_digits_split

#: Small runs that learn something within an epoch (the network fires), with rate coding so that
#: the coding generator's state matters.
SMALL = ["--limit", "450", "--T", "4", "--hidden", "64", "--lr", "0.01", "--batch-size", "32",
         "--encoding", "rate", "--no-plots"]
TINY = ["--epochs", "1", "--T", "2", "--limit", "200", "--hidden", "32", "--batch-size", "50", "--no-plots"]
CHILD_TIMEOUT_S = 300

_KILLER = r"""
import os, signal, sys
mode, count, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = [0]
if mode == "batch":  # SIGKILL just before the count-th training batch
    from snn.train import runner
    original = runner.Runner.train_batch
    def train_batch(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)
    runner.Runner.train_batch = train_batch
else:  # SIGKILL while the count-th checkpoint is written: its temporary file torn, not renamed
    original_replace = os.replace
    def replace(source, target, *args, **kwargs):
        if str(target).endswith("checkpoint.pt"):
            calls[0] += 1
            if calls[0] == count:
                with open(source, "r+b") as handle:
                    handle.truncate(os.path.getsize(source) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return original_replace(source, target, *args, **kwargs)
    os.replace = replace
from snn.train.command import main
raise SystemExit(main(argv))
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def run_train(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = command.run(parse(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def run_evaluate(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="snn evaluate")
    evaluate.add_arguments(parser)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = evaluate.run(parser.parse_args(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def killed_run(mode: str, count: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _KILLER, mode, str(count), *argv], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / MODEL_FILE, weights_only=True)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def has_learner(name: str) -> bool:
    from snn.plugins import get_registry

    return name in get_registry().learners


# -- checkpoints and model files ------------------------------------------------------------------


def test_run_files_hold_plain_data_and_every_random_state(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = run_train([*TINY, "--epochs", "2", "--out", str(out)])
    assert code == 0, stderr
    # weights_only=True: tensors and plain data only, no pickled objects
    checkpoint = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    model = torch.load(out / MODEL_FILE, weights_only=True)
    assert checkpoint["epoch"] == 2 and [h["epoch"] for h in checkpoint["history"]] == [1, 2]
    rng = checkpoint["rng"]
    assert isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8
    assert set(rng["generators"]) == {"order", "coding"}
    assert rng["numpy"]["keys"].shape == (624,) and len(rng["python"]["state"]) == 625
    assert checkpoint["optimizer"]["state"], "Adam's moments are saved"
    assert checkpoint["config"] == model["config"] == TrainConfig(
        epochs=2, T=2, limit=200, hidden=32, batch_size=50).to_dict()
    # the last checkpoint and the model file hold the same final weights
    assert checkpoint["model"].keys() == model["state_dict"].keys()
    assert all(torch.equal(checkpoint["model"][k], model["state_dict"][k]) for k in checkpoint["model"])
    assert not list(out.glob(".tmp-*")), "no temporary file is left behind"
    metrics = json.loads((out / "metrics.json").read_text())
    assert model["metrics"]["test_accuracy"] == metrics["test_accuracy"]


def test_random_states_round_trip() -> None:
    import random

    import numpy as np

    from snn.train.checkpoint import capture_rng_states, restore_rng_states

    generator = torch.Generator().manual_seed(3)
    torch.rand(5, generator=generator)
    states = capture_rng_states({"g": generator})
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    restore_rng_states(states, {"g": generator})
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2] and torch.equal(expected[3], again[3])


@pytest.mark.parametrize(("learner", "mode"), [("bptt", "batch"), ("bptt", "write"), ("fptt", "batch")])
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, learner: str, mode: str) -> None:
    """SIGKILL in the middle of epoch 2 of 4 (or while its checkpoint is written), then --resume."""
    if learner != "bptt" and not has_learner(learner):
        pytest.skip(f"learner {learner!r} needs snn-online")
    argv = [*SMALL, "--epochs", "4", "--learner", learner]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    code, stdout, stderr = run_train([*argv, "--out", str(reference)])
    assert code == 0, stderr
    n_train = json.loads((reference / "metrics.json").read_text())["n_train"]
    batches = -(-n_train // 32)
    # "batch": die before the 3rd batch of epoch 2; "write": while epoch 2's checkpoint is written
    count = batches + 3 if mode == "batch" else 2
    child = killed_run(mode, count, [*argv, "--out", str(killed)])
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "epoch 1/4" in child.stdout and "epoch 2/4" not in child.stdout
    assert load_checkpoint(killed / CHECKPOINT_FILE)["epoch"] == 1  # the last complete checkpoint
    assert not (killed / MODEL_FILE).exists()
    if mode == "write":
        assert list(killed.glob(".tmp-checkpoint.pt.*")), "the torn temporary file is there"

    code, stdout, stderr = run_train(["--resume", str(killed), "--no-plots"])
    assert code == 0, stderr
    assert stdout.startswith(f"resuming {killed} after epoch 1 of 4")
    assert [line.split()[1] for line in stdout.splitlines() if line.startswith("epoch")] == ["2/4", "3/4", "4/4"]
    difference = max_difference(weights(killed), weights(reference))
    print(f"\n[{learner}, killed at {mode}] max |w_resumed - w_uninterrupted| = {difference}")
    assert all(torch.equal(a, b) for a, b in zip(weights(killed).values(), weights(reference).values()))
    assert (killed / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    assert not list(killed.glob(".tmp-*"))


def test_resume_can_extend_a_finished_run(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_train([*SMALL, "--epochs", "1", "--out", str(one)])[0] == 0
    assert run_train([*SMALL, "--epochs", "2", "--out", str(two)])[0] == 0
    code, stdout, stderr = run_train(["--resume", str(one), "--epochs", "2", "--no-plots"])
    assert code == 0, stderr
    assert all(torch.equal(a, b) for a, b in zip(weights(one).values(), weights(two).values()))
    assert (one / "metrics.json").read_bytes() == (two / "metrics.json").read_bytes()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--lr", "0.02"], "--lr 0.02 conflicts with the run"),
        (["--model", "conv"], "--model conv conflicts"),
        (["--threads", "0", "--encoding", "direct"], "--encoding direct conflicts"),
        (["--out", "elsewhere"], "--out elsewhere: a resumed run writes into its own folder"),
        (["--epochs", "1"], "--epochs 1: the run in"),
    ],
)
def test_resume_refuses_conflicting_options(tmp_path: Path, extra: list[str], named: str) -> None:
    run_dir = tmp_path / "run"
    assert run_train([*SMALL, "--epochs", "2", "--out", str(run_dir)])[0] == 0
    before = (run_dir / CHECKPOINT_FILE).read_bytes()
    code, _, stderr = run_train(["--resume", str(run_dir), *extra])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {named}") and stderr.count("\n") == 1, stderr
    assert (run_dir / CHECKPOINT_FILE).read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no CUDA device")
def test_resume_of_a_cuda_run_where_there_is_none_names_the_runs_setting(tmp_path: Path) -> None:
    """A setting the user did not give comes from the run: the error says so (it said '--device:
    cuda asked for' as though the user had asked)."""
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--epochs", "1", "--out", str(run_dir)])[0] == 0
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    content["config"]["device"] = "cuda"
    torch.save(content, path)
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("snn train: error: --device: 'cuda' asked for, but torch sees no CUDA device here")
    assert f"(--device cuda is a setting of the run in {run_dir}: continue it where that works" in stderr
    code, _, stderr = run_train(["--resume", str(run_dir), "--device", "cpu"])  # given: a conflict
    assert code == 2 and "--device cpu conflicts with the run" in stderr


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("weights", "expected torch.float32 ["),
        ("integer-weights", "expected torch.float32 ["),
        ("nan-weights", "holds NaN or infinite values"),
        ("nan-moment", "exp_avg_sq of parameter 0: holds NaN values"),
        ("optimizer", "'param_groups' should be a list of 1 group(s)"),
        ("moment", "exp_avg of parameter 0: expected a floating tensor"),
        ("scalar-moment", "exp_avg of parameter 0: expected a floating tensor"),
        ("list-moment", "exp_avg_sq of parameter 0: expected a floating tensor"),
        ("missing-moment", "state of parameter 0 lacks ['exp_avg']"),
        ("lr", "param_groups[0]['lr']: expected the run's"),
        ("betas", "param_groups[0]['betas']: expected the run's"),
        ("rng", "KeyError: 'order'"),
    ],
)
def test_resume_of_a_checkpoint_that_does_not_fit_its_run(tmp_path: Path, damage: str, named: str) -> None:
    """A checkpoint that loads (tensors and plain data) but whose weights, optimizer or random
    states do not fit the network its configuration builds: a one-line error naming the file."""
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--epochs", "1", "--out", str(run_dir)])[0] == 0
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    if damage == "weights":
        name = next(iter(content["model"]))
        content["model"][name] = torch.zeros(3, 3)
    elif damage == "integer-weights":  # load_state_dict would truncate them to integers silently
        name = next(iter(content["model"]))
        content["model"][name] = content["model"][name].to(torch.int32)
    elif damage == "nan-weights":  # evaluate would report an accuracy, a resumed run blame --lr
        name = next(iter(content["model"]))
        content["model"][name] = torch.full_like(content["model"][name], float("nan"))
    elif damage == "nan-moment":
        content["optimizer"]["state"][0]["exp_avg_sq"][0] = float("nan")
    elif damage == "optimizer":
        del content["optimizer"]["param_groups"]
    elif damage == "moment":  # Adam would load it and fail inside its next step
        content["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)
    elif damage == "scalar-moment":
        content["optimizer"]["state"][0]["exp_avg"] = torch.tensor(1.0)
    elif damage == "list-moment":
        content["optimizer"]["state"][0]["exp_avg_sq"] = [1.0]
    elif damage == "missing-moment":
        del content["optimizer"]["state"][0]["exp_avg"]
    elif damage == "lr":  # would override the configuration's learning rate, or fail inside Adam
        content["optimizer"]["param_groups"][0]["lr"] = "x"
    elif damage == "betas":
        content["optimizer"]["param_groups"][0]["betas"] = "x"
    else:
        content["rng"]["generators"] = {}
    torch.save(content, path)
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {path}: the checkpoint does not fit the run"), stderr
    assert named in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("history-keys", "history entry 0: has the keys ['a']"),
        ("history-value", "history entry 0: 'test_accuracy' should be a number, found str"),
        ("history-epoch", "history entry 0: 'epoch' should be 1, found 7"),
        ("history-short", "epoch 1 with 0 history entries"),
        ("accuracy-above-one", "history entry 0: 'train_accuracy' is out of range: 1.0000001"),
        ("numpy-keys", "the random states: 'numpy' should be None or hold numpy's legacy state"),
        ("python-state", "the random states: 'python' should hold random.getstate()"),
    ],
)
def test_resume_of_a_malformed_checkpoint_names_the_file(tmp_path: Path, damage: str, named: str) -> None:
    """History records and random states of another layout: refused when the checkpoint is
    read, in one line naming the file, before anything is trained or written (they used to
    fail in the middle of the run with a traceback or a message without the file)."""
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--epochs", "1", "--out", str(run_dir)])[0] == 0
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    if damage == "history-keys":
        content["history"][0] = {"a": 1}
    elif damage == "history-value":
        content["history"][0]["test_accuracy"] = "x"
    elif damage == "history-epoch":
        content["history"][0]["epoch"] = 7
    elif damage == "history-short":  # would train epoch 1 again on top of its weights
        content["history"] = []
    elif damage == "accuracy-above-one":
        content["history"][0]["train_accuracy"] = 1.0000001
    elif damage == "numpy-keys":
        if content["rng"]["numpy"] is None:
            pytest.skip("the run recorded no numpy state")
        content["rng"]["numpy"]["keys"] = 5
    else:
        content["rng"]["python"]["state"] = "x"
    torch.save(content, path)
    before = path.read_bytes()
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {path}: malformed checkpoint: {named}"), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert path.read_bytes() == before


def test_resume_takes_what_real_runs_write(tmp_path: Path) -> None:
    """An accuracy of exactly 1 and an infinite Adam second moment (a huge gradient) come from
    real runs: they load; and --epochs equal to the epochs done resumes to a finished run."""
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--epochs", "1", "--out", str(run_dir)])[0] == 0
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    content["history"][0]["train_accuracy"] = 1.0
    content["history"][0]["test_accuracy"] = 0.0
    content["optimizer"]["state"][0]["exp_avg_sq"].view(-1)[0] = float("inf")
    torch.save(content, path)
    code, stdout, stderr = run_train(["--resume", str(run_dir), "--epochs", "1", "--no-plots"])
    assert code == 0, stderr
    assert "after epoch 1 of 1" in stdout
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 0, stderr
    assert len(json.loads((run_dir / "metrics.json").read_text())["history"]) == 2


def test_resume_of_a_missing_or_broken_run(tmp_path: Path) -> None:
    code, _, stderr = run_train(["--resume", str(tmp_path / "nothing")])
    assert code == 2 and "--resume" in stderr and "no such folder" in stderr
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_train(["--resume", str(tmp_path / "empty")])
    assert code == 2 and "no checkpoint.pt in it" in stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 not really a checkpoint")
    code, _, stderr = run_train(["--resume", str(broken)])
    assert code == 2 and "not a readable checkpoint" in stderr and "Traceback" not in stderr


def test_train_api_refuses_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    assert run_train([*TINY, "--out", str(tmp_path / "run")])[0] == 0
    checkpoint = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)
    config = TrainConfig.from_dict(checkpoint["config"])
    config.hidden = 16
    with pytest.raises(ValueError, match="hidden: the checkpoint's run has hidden=32, got 16"):
        train(config, checkpoint=checkpoint)


# -- snn evaluate and load_model -----------------------------------------------------------------


@pytest.mark.parametrize("learner", ["bptt", "sltt"])
def test_evaluate_equals_the_runs_accuracy(tmp_path: Path, learner: str) -> None:
    if learner != "bptt" and not has_learner(learner):
        pytest.skip(f"learner {learner!r} needs snn-online")
    out = tmp_path / "run"
    assert run_train([*SMALL, "--epochs", "2", "--learner", learner, "--out", str(out)])[0] == 0
    recorded = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    code, stdout, stderr = run_evaluate([str(out), "--json"])
    assert code == 0, stderr
    report = json.loads(stdout)
    print(f"\n[{learner}] snn evaluate {report['test_accuracy']} vs the run's {recorded}")
    assert report["test_accuracy"] == recorded == report["recorded_test_accuracy"]
    assert report["right"] == round(recorded * report["n_test"])
    code, stdout, _ = run_evaluate([str(out / MODEL_FILE)])
    assert code == 0 and stdout.startswith(f"test accuracy {100 * recorded:.2f}%")
    # from Python: the rebuilt network classifies the test set (one batch of fewer than 512
    # images, coded with the generator the run seeded for evaluation) as the run did
    trained = load_model(out)
    assert trained.step_mode == ("m" if learner == "bptt" else "s")
    assert not trained.network.training
    data = load_digits_split(trained.config.seed, limit=trained.config.limit)
    generator = torch.Generator().manual_seed(trained.config.seed + 3)
    predicted = trained.predict(data.x_test, generator=generator)
    assert predicted.shape == data.y_test.shape and predicted.dtype == torch.int64
    assert int((predicted == data.y_test).sum()) == report["right"]
    with pytest.raises(ValueError, match=r"images: expected a tensor \[N, 1, 8, 8\]"):
        trained.predict(data.x_test.flatten(1))


def _write_pickled_object(path: Path) -> None:
    torch.save({"format": "snn-train-model", "object": types.SimpleNamespace(a=1)}, path)


class _CallsOnLoad:
    """Pickles as a call of a function of a module torch's restricted unpickler blocks."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        import os

        return (os.getpid, ())


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncate", "the file is truncated or corrupted"),
        ("corrupt", "not a readable model file"),
        ("empty", "the file is truncated or corrupted"),
        ("pickled", "holds pickled Python objects"),
        ("pickled-call", "holds pickled Python objects"),
        ("bare-pickle", "not a readable model file: it is corrupted (Unsupported operand 149)"),
        ("integer-weights", "the weights do not fit the network its configuration describes (state_dict: "),
        ("foreign", "not an snn train model file: expected format 'snn-train-model', found None"),
        ("misshapen", "the weights do not fit the network"),
    ],
)
def test_broken_model_files_get_a_clear_error(tmp_path: Path, damage: str, expected: str) -> None:
    out = tmp_path / "run"
    assert run_train([*TINY, "--out", str(out)])[0] == 0
    path = out / MODEL_FILE
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle: middle + 4096]) + data[middle + 4096:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pickled":
        _write_pickled_object(path)
    elif damage == "pickled-call":
        torch.save({"format": "snn-train-model", "object": _CallsOnLoad()}, path)
    elif damage == "bare-pickle":  # not a torch.save archive, in a protocol torch warns about
        import pickle

        path.write_bytes(pickle.dumps({"format": "snn-train-model"}, protocol=4))
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif damage == "integer-weights":  # would load as truncated weights and evaluate wrongly
        content = torch.load(path, weights_only=True)
        name = next(iter(content["state_dict"]))
        content["state_dict"][name] = content["state_dict"][name].to(torch.int64)
        torch.save(content, path)
    else:
        content = torch.load(path, weights_only=True)
        content["config"]["hidden"] = 16
        torch.save(content, path)
    code, stdout, stderr = run_evaluate([str(out)])
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"snn evaluate: error: {path}") and expected in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "likely succeed" not in stderr and "False" not in stderr  # torch's advice: weights_only=False
    with pytest.raises(RunFileError, match=str(path)):
        load_model(path)


def test_out_holding_a_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train([*TINY, "--out", str(out)])[0] == 0
    code, _, stderr = run_train([*TINY, "--out", str(out)])
    assert code == 2
    assert f"already holds a training run (checkpoint.pt); continue it with --resume {out}" in stderr


def test_snn_evaluate_is_a_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from snn.cli import main

    assert run_train([*TINY, "--out", str(tmp_path / "run")])[0] == 0
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"]
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == recorded
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_load_model_checks_its_arguments(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train([*TINY, "--out", str(out)])[0] == 0
    with pytest.raises(TypeError, match="load_model: path: expected a path"):
        load_model(None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="load_model: device: expected a str or torch.device, got int 5"):
        load_model(out, device=5)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'bogus'"):
        load_model(out, device="bogus")
    if not torch.cuda.is_available():
        for device in ("cuda", torch.device("cuda")):
            with pytest.raises(ValueError, match="device: 'cuda' asked for, but torch sees no CUDA device here"):
                load_model(out, device=device)
    assert load_model(out, device=torch.device("cpu")).network is not None


def test_python_m_snn_train_evaluate_runs_without_warnings() -> None:
    # importing snn.train must not import snn.train.evaluate (runpy would warn that it runs a
    # module already imported)
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "snn.train.evaluate", "--help"],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0 and "RUN_DIR" in done.stdout, done.stderr
    assert "RuntimeWarning" not in done.stderr


def test_weights_that_become_nan_end_the_run(tmp_path: Path) -> None:
    # lr just below MAX_LR: Adam's steps overflow the weights, and silent neurons keep the loss finite
    out = tmp_path / "run"
    code, _, stderr = run_train([
        "--epochs", "2", "--limit", "200", "--T", "4", "--hidden", "32", "--no-plots", "--encoding", "rate",
        "--batch-size", "16", "--lr", "3e37", "--out", str(out),
    ])
    assert code == 1 and "became NaN or infinite in epoch 1; try a smaller --lr" in stderr, stderr
    assert not (out / MODEL_FILE).exists()


def test_train_api_checks_its_arguments(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, T=2, limit=200, hidden=8)
    with pytest.raises(TypeError, match="config: expected a TrainConfig, got dict"):
        train({"epochs": 1})  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="on_epoch: expected a callable or None, got int"):
        train(config, on_epoch=5)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="checkpoint: expected a checkpoint from snn.train.load_checkpoint"):
        train(config, checkpoint={})
    with pytest.raises(ValueError, match="run_dir: expected a folder path, got ''"):
        train(config, run_dir="")
    assert run_train([*TINY, "--out", str(tmp_path / "run")])[0] == 0
    with pytest.raises(ValueError, match=r"run_dir: .* already holds a training run \(checkpoint.pt, model.pt\)"):
        train(config, run_dir=tmp_path / "run")
    for threads, error in ((True, TypeError), (100000, ValueError), (0, ValueError)):
        with pytest.raises(error, match="threads: expected None or an integer"):
            TrainConfig(epochs=1, threads=threads).validate()


def test_resume_of_a_learner_state_of_another_layout(tmp_path: Path) -> None:
    """FPTT's running average (one tensor per parameter) of another shape: refused on resume,
    naming the file, instead of failing at the first step with a message about w_ra (the
    layout check itself: test_learner_state_layout_check, which needs no plugin)."""
    if not has_learner("fptt"):
        pytest.skip("learner 'fptt' needs snn-online")
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--learner", "fptt", "--epochs", "1", "--out", str(run_dir)])[0] == 0
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    content["learner_state"][0] = torch.zeros(3)
    torch.save(content, path)
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {path}: the checkpoint does not fit the run"), stderr
    assert "learner_state[0]: expected torch.float32" in stderr and stderr.count("\n") == 1


def test_learner_state_layout_check() -> None:
    """A saved learner state must have the layout of the run's own ``init_state``: containers,
    lengths, keys, tensor shapes and dtypes, numbers for numbers."""
    from snn.train.runner import _check_same_layout

    template = [torch.zeros(2, 3), {"count": 0, "trace": torch.zeros(4)}, None]
    _check_same_layout([torch.ones(2, 3), {"count": 5.0, "trace": torch.ones(4)}, None], template, "learner_state")
    for saved, named in [
        ([torch.zeros(3), {"count": 0, "trace": torch.zeros(4)}, None], "learner_state[0]: expected torch.float32 [2, 3]"),
        ([torch.zeros(2, 3, dtype=torch.float64), {"count": 0, "trace": torch.zeros(4)}, None], "learner_state[0]"),
        ([torch.zeros(2, 3), {"count": "x", "trace": torch.zeros(4)}, None], "learner_state[1]['count']: expected a number"),
        ([torch.zeros(2, 3), {"trace": torch.zeros(4)}, None], "learner_state[1]: expected the keys"),
        ([torch.zeros(2, 3)], "learner_state: expected a sequence of 3"),
        ([torch.zeros(2, 3), {"count": 0, "trace": torch.zeros(4)}, 1], "learner_state[2]: expected NoneType"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named)):
            _check_same_layout(saved, template, "learner_state")


def test_evaluate_refuses_a_model_file_with_non_finite_weights(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--out", str(run_dir)])[0] == 0
    path = run_dir / MODEL_FILE
    content = torch.load(path, weights_only=True)
    name = next(iter(content["state_dict"]))
    content["state_dict"][name] = content["state_dict"][name].clone().fill_(float("inf"))
    torch.save(content, path)
    code, stdout, stderr = run_evaluate([str(run_dir)])
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"snn evaluate: error: {path}: the weights do not fit"), stderr
    assert f"{name}: holds NaN or infinite values" in stderr


def test_resume_of_a_configuration_too_large_for_this_machine_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network a checkpoint's configuration describes does not fit in memory: exit 2 and
    the file named (a generic out-of-memory error said 'try smaller sizes', which a resumed run
    cannot take). The allocation failure is simulated: a real one could wake the OOM killer."""
    from snn.train import loop

    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--out", str(run_dir)])[0] == 0

    def no_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 256000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(loop, "check_settings", no_memory)
    code, _, stderr = run_train(["--resume", str(run_dir), "--epochs", "2", "--no-plots"])
    assert code == 2, stderr
    assert stderr == (
        f"snn train: error: {run_dir / CHECKPOINT_FILE}: the network its configuration describes (hidden=32) "
        "does not fit in memory\n"
    )


def test_evaluate_blames_the_run_only_for_the_run_s_own_device_or_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unavailable device or backend recorded in the file is named as the run's (with the
    option that chooses another); the user's own --device, or a learner that is not installed,
    is reported as it is, without blaming the run's device or backend."""
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--out", str(run_dir)])[0] == 0
    path = run_dir / MODEL_FILE
    content = torch.load(path, weights_only=True)
    content["backend"] = "no-such-backend"
    torch.save(content, path)
    code, _, stderr = run_evaluate([str(run_dir)])
    assert code == 2
    assert stderr.startswith(
        f"snn evaluate: error: {path}: the run's backend 'no-such-backend' cannot run here (give --backend to choose another)"
    ), stderr
    assert run_evaluate([str(run_dir), "--backend", "torch"])[0] == 0
    code, _, stderr = run_evaluate([str(run_dir), "--backend", "torch", "--device", "meta"])
    assert code == 2 and "run's" not in stderr and "device" in stderr, stderr
    content["backend"], content["device"] = "torch", "meta"
    torch.save(content, path)
    code, _, stderr = run_evaluate([str(run_dir)])
    assert code == 2
    assert stderr.startswith(f"snn evaluate: error: {path}: the run's device 'meta' cannot be used here (give --device"), stderr
    content["device"] = "cpu"
    content["config"]["learner"] = "no-such-learner"
    torch.save(content, path)
    code, _, stderr = run_evaluate([str(run_dir)])
    assert code == 2 and "run's" not in stderr and "no-such-learner" in stderr, stderr

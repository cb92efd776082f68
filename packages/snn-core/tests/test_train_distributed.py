"""``snn train --nproc N``: data-parallel worker processes (torch.distributed, gloo on the CPU).

Each scenario launches ``python -m snn train --nproc 2`` as a real command (two spawned
workers) and compares its ``model.pt`` with one process trained in this process on the
same global batches. DDP averages the two halves' gradients, so the weights differ only by
float32 summation order: the largest difference must stay within 1e-5. Runs are small (a few
hundred images, T = 4, one to three epochs) and every launch has a timeout. The printed figures
are the measured differences.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("sklearn", reason='snn train needs the demo extra: pip install "snn-core[demo]"')
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available in this torch build", allow_module_level=True)

from snn.registry import LearnerRegistrar
from snn.train import command
from snn.train.checkpoint import MODEL_FILE
from snn.train.distributed import share

pytestmark = pytest.mark.slow

#: Tolerance on the final weights (largest absolute difference) between 2 processes and 1.
WEIGHT_TOLERANCE = 1e-5
#: Seconds within which a run with a killed worker must exit.
FAILURE_DEADLINE_S = 60.0
LAUNCH_TIMEOUT_S = 300
SMALL = ["--limit", "450", "--T", "4", "--hidden", "64", "--lr", "0.01", "--batch-size", "32", "--no-plots"]


def run_train(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = command.run(parser.parse_args(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def launch(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "snn", "train", *argv], capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S, env=env)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / MODEL_FILE, weights_only=True)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def has_learner(name: str) -> bool:
    from snn.plugins import get_registry

    return name in get_registry().learners


def test_shares_cover_a_batch_once_in_order() -> None:
    for n in (2, 7, 32, 33):
        for world in (1, 2, 3):
            if n < world:
                continue
            parts = [share(n, rank, world) for rank in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [stop - start for start, stop in parts]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize(
    ("learner", "extra"),
    # fptt: the online learner with a state (its running average) and two forward-backward
    # pairs per step; ottt and sltt run the simpler one-pair-per-step loop (measured: ottt 6.0e-7
    # after one epoch of these settings), left out to keep the launches few on shared CPUs
    [("bptt", ["--encoding", "rate", "--epochs", "3"]), ("fptt", ["--epochs", "2"])],
    ids=["bptt-rate-coding", "fptt"],
)
def test_two_processes_match_one(tmp_path: Path, learner: str, extra: list[str], record_property: Any) -> None:
    if learner != "bptt" and not has_learner(learner):
        pytest.skip(f"learner {learner!r} needs snn-online")
    argv = [*SMALL, "--learner", learner, *extra]
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    code, _, stderr = run_train([*argv, "--out", str(single)])
    assert code == 0, stderr
    result = launch([*argv, "--nproc", "2", "--out", str(parallel), "--json"])
    assert result.returncode == 0, result.stderr
    difference = max_difference(weights(parallel), weights(single))
    record_property(f"nproc2_{learner}_max_weight_difference", difference)
    print(f"\n[{learner}] max |w_2proc - w_1proc| = {difference:.3e}")
    assert difference <= WEIGHT_TOLERANCE
    assert max_difference(weights(single), torch.load(single / "checkpoint.pt", weights_only=True)["model"]) == 0.0
    # rank 0 alone prints and writes: each epoch line once, one JSON summary, the usual files
    epochs = int(extra[extra.index("--epochs") + 1])
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == [f"{e}/{epochs}" for e in range(1, epochs + 1)]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(result.stdout.strip().splitlines()) == 1
    assert summary["world_size"] == 2 and summary["epochs"] == epochs
    assert sorted(p.name for p in parallel.iterdir()) == ["checkpoint.pt", "metrics.json", "model.pt"]
    metrics = json.loads((single / "metrics.json").read_text())
    assert summary["n_train"] == metrics["n_train"] and summary["config"] == metrics["config"]
    # the reported loss and accuracy are of the global batches, as one process computes them
    shared = json.loads((parallel / "metrics.json").read_text())
    for key in ("train_loss", "train_accuracy"):
        assert [e[key] for e in shared["history"]] == pytest.approx([e[key] for e in metrics["history"]], rel=1e-4)


def test_resume_with_two_processes(tmp_path: Path) -> None:
    """A one-process checkpoint continued by two processes (rank 0 reads it and sends it to rank 1)."""
    argv = [*SMALL, "--encoding", "rate"]
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    assert run_train([*argv, "--epochs", "2", "--out", str(reference)])[0] == 0
    assert run_train([*argv, "--epochs", "1", "--out", str(run_dir)])[0] == 0
    result = launch(["--resume", str(run_dir), "--epochs", "2", "--nproc", "2", "--no-plots"])
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} after epoch 1 of 2" in result.stdout
    difference = max_difference(weights(run_dir), weights(reference))
    print(f"\n[resume on 2 processes] max |w - w_1proc| = {difference:.3e}")
    assert difference <= WEIGHT_TOLERANCE
    assert json.loads((run_dir / "metrics.json").read_text())["world_size"] == 2


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), command_line))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through Linux's /proc")
def test_a_killed_worker_ends_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    process = subprocess.Popen(
        [sys.executable, "-m", "snn", "train", *SMALL, "--epochs", "1000", "--nproc", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = process.stdout.readline() if process.stdout else ""
        assert first.startswith("epoch    1/1000"), first + (process.stderr.read() if process.stderr else "")
        workers = [pid for pid, line in _children(process.pid) if "spawn_main" in line]
        assert len(workers) == 2, _children(process.pid)
        victim = max(workers)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=FAILURE_DEADLINE_S)
        elapsed = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(f"\n[killed worker {victim}] exit status {process.returncode} after {elapsed:.1f} s:\n{stderr.strip()}")
    assert process.returncode == 1
    assert elapsed < FAILURE_DEADLINE_S
    assert f"(pid {victim}) was killed by signal SIGKILL" in stderr
    assert f"continue from the last checkpoint with: snn train --resume {out}" in stderr
    survivors = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)]
    assert not survivors, "the other worker was stopped"


def _state(pid: int) -> str:
    try:
        return "zombie" if (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" else "alive"
    except OSError:
        return "gone"


def test_a_learner_must_allow_data_parallel_training(tmp_path: Path, temporary_plugin: Any) -> None:
    import snn
    from snn.learning import OnlineLearner

    class TwoForwardsOneBackward(OnlineLearner):
        """Calls the network twice per backward pass, which DDP does not allow."""

        time_dim = 0

        def train_sequence(self, model, optimizer, x_seq, target_seq, f_loss_t, state=None, **options):  # type: ignore[no-untyped-def]  # a minimal learner, untyped on purpose
            optimizer.zero_grad()
            loss = sum(f_loss_t(model(x_seq[t]), target_seq[t]) for t in range(x_seq.shape[0]))
            loss.backward()
            optimizer.step()
            return loss.detach(), None

    @snn.hookimpl
    def snn_register_online_learners(register: LearnerRegistrar) -> None:
        register("two_forwards", TwoForwardsOneBackward())

    temporary_plugin(types.SimpleNamespace(snn_register_online_learners=snn_register_online_learners), name="tf")
    out = tmp_path / "run"
    code, _, stderr = run_train([*SMALL, "--learner", "two_forwards", "--nproc", "2", "--out", str(out)])
    assert code == 2
    assert "learner 'two_forwards' cannot train data-parallel (2 processes)" in stderr
    assert "data_parallel=True" in stderr and stderr.count("\n") == 1
    assert not out.exists()
    assert run_train([*SMALL, "--epochs", "1", "--learner", "two_forwards", "--out", str(out)])[0] == 0


def test_every_batch_needs_an_image_per_process(tmp_path: Path) -> None:
    # --limit 401: 40 or 41 images per class, 321 training images, a last batch of 1 at --batch-size 32
    code, _, stderr = run_train([*SMALL, "--limit", "401", "--nproc", "2", "--out", str(tmp_path / "run")])
    assert code == 2
    assert stderr.startswith("snn train: error: --batch-size: with 2 processes every batch needs at least 2 images")


def test_failure_report_names_the_likeliest_cause_first() -> None:
    from snn.train.distributed import WorkerFailedError, _cause_order, _describe_failures, _WorkerExit

    trace = "Traceback (most recent call last):\n  ...\nRuntimeError: ..."
    found = [  # in the order the launcher found them dead
        _WorkerExit(4, 105, 2),
        _WorkerExit(0, 101, 1, "RuntimeError: Connection closed by peer", trace),
        _WorkerExit(3, 104, -signal.SIGABRT),
        _WorkerExit(5, 106, 1, "the training loss became nan at epoch 3", reported=True),
        _WorkerExit(1, 102, -signal.SIGKILL),
        _WorkerExit(2, 103, 2),
    ]
    lines, tracebacks = _describe_failures(sorted(found, key=_cause_order))
    assert lines == [
        "rank 1 (pid 102) was killed by signal SIGKILL",
        "rank 5 (pid 106): the training loss became nan at epoch 3",
        "rank 0 (pid 101) raised RuntimeError: Connection closed by peer",
        "rank 3 (pid 104) was killed by signal SIGABRT",
        "rank 4 (pid 105) exited with status 2",
        "rank 2 (pid 103) exited with status 2",
    ]
    assert tracebacks == {0: trace}
    error = WorkerFailedError(lines, tracebacks, cause_rank=1)
    assert str(error).startswith("worker process failed: rank 1 (pid 102) was killed by signal SIGKILL; rank 5")
    # snn train prints the traceback of the likeliest cause alone: here none (a SIGKILL)
    stdout, stderr = io.StringIO(), io.StringIO()
    assert command._fail(argparse.Namespace(json=False), error, stdout, stderr) == 1
    assert "traceback" not in stderr.getvalue() and stderr.getvalue().count("\n") == 1
    stderr = io.StringIO()
    command._fail(argparse.Namespace(json=False), WorkerFailedError(lines[2:], tracebacks, cause_rank=0), stdout, stderr)
    assert stderr.getvalue().splitlines()[1:] == ["traceback of rank 0:", *trace.splitlines()]


#: Worker entry points for the launcher tests. Spawned workers import them by name, so they
#: live in a module of their own (written to a folder on sys.path, which the workers inherit):
#: pytest's importlib mode gives this test file a name no other process can import.
LAUNCHER_CASES = """
import os
import time


def raise_on_rank_1(message):
    if os.environ["RANK"] == "1":
        raise FloatingPointError(message)
    time.sleep(60)  # stopped by the launcher


def exit_on_rank_0(code):
    if os.environ["RANK"] == "0":
        raise SystemExit(code)
    time.sleep(60)


def report_on_rank_0(message, flag):
    from snn.train.distributed import report_failure

    if os.environ["RANK"] == "0":
        assert report_failure(message)
        open(flag, "w").close()
        time.sleep(0.3)  # the consequence exits first; the launcher waits for the cause
        raise SystemExit(1)
    while not os.path.exists(flag):
        time.sleep(0.01)
    raise SystemExit(2)  # a consequence: listed after the reported cause


def exit_with_a_message_on_rank_1(message):
    if os.environ["RANK"] == "1":
        raise SystemExit(message)
    time.sleep(60)


def fork_then_raise_on_rank_1():
    if os.environ["RANK"] == "1":
        if os.fork() == 0:  # a child holding the worker's end of the launcher's sentinel pipe
            time.sleep(20)
            os._exit(0)
        raise RuntimeError("failed while a forked child lives on")
    time.sleep(60)


def check_environment(nproc):
    rank = int(os.environ["RANK"])
    assert os.environ["WORLD_SIZE"] == str(nproc) and os.environ["LOCAL_RANK"] == str(rank)
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and int(os.environ["MASTER_PORT"]) > 0
"""


def test_the_launcher_reports_how_a_worker_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from snn.train.distributed import WorkerFailedError, launch as launch_workers

    (tmp_path / "snn_launcher_cases.py").write_text(LAUNCHER_CASES)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = importlib.import_module("snn_launcher_cases")

    launch_workers(3, cases.check_environment, 3)  # returns: every worker exited with status 0
    started = time.monotonic()
    with pytest.raises(WorkerFailedError) as raised:
        launch_workers(2, cases.raise_on_rank_1, "the training loss became nan")
    assert time.monotonic() - started < 30, "rank 0 was stopped, not waited for"
    (line,) = raised.value.failures
    assert line.startswith("rank 1 (pid ") and line.endswith(") raised FloatingPointError: the training loss became nan")
    assert list(raised.value.tracebacks) == [1] and "raise_on_rank_1" in raised.value.tracebacks[1]
    assert raised.value.cause_rank == 1
    with pytest.raises(WorkerFailedError, match=r"^worker process failed: rank 0 \(pid \d+\) exited with status 3$"):
        launch_workers(2, cases.exit_on_rank_0, 3)
    with pytest.raises(WorkerFailedError) as raised:
        launch_workers(2, cases.report_on_rank_0, "the training loss became nan at epoch 1", str(tmp_path / "flag"))
    assert raised.value.failures[0].endswith("): the training loss became nan at epoch 1")
    assert raised.value.failures[0].startswith("rank 0 (pid ") and not raised.value.tracebacks
    assert len(raised.value.failures) == 2 and raised.value.failures[1].endswith("exited with status 2")
    with pytest.raises(WorkerFailedError, match=r"^worker process failed: rank 1 \(pid \d+\): no data$"):
        launch_workers(2, cases.exit_with_a_message_on_rank_1, "no data")
    with pytest.raises(ValueError, match="nproc: expected an int >= 2, got 1"):
        launch_workers(1, cases.check_environment, 1)


def test_a_worker_leaves_its_error_to_the_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `snn train --nproc`, a worker's error is printed once, by the launcher (JSON too)."""
    from snn.train.distributed import WORKER_REPORT_ENV, report_failure

    assert not report_failure("outside a worker")  # one process: nothing to leave it to
    report = tmp_path / "rank0.json"
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(WORKER_REPORT_ENV, str(report))
    stdout, stderr = io.StringIO(), io.StringIO()
    error = FloatingPointError("the training loss became nan at epoch 1; try a smaller --lr")
    args = argparse.Namespace(json=True)
    assert command._fail(args, error, stdout, stderr, where="rank 0: ") == 1
    assert stdout.getvalue() == stderr.getvalue() == ""
    assert json.loads(report.read_text()) == {"message": str(error), "reported": True}
    monkeypatch.setenv(WORKER_REPORT_ENV, str(tmp_path / "missing" / "rank0.json"))  # cannot be written
    assert command._fail(args, ValueError("x: bad"), stdout, stderr, where="rank 0: ") == 2
    assert stderr.getvalue() == "snn train: error: rank 0: x: bad\n"
    assert json.loads(stdout.getvalue()) == {"error": "rank 0: x: bad", "error_type": "ValueError"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_failure_is_found_while_a_forked_child_holds_the_sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from snn.train.distributed import FAILURE_GRACE_S, WorkerFailedError, launch as launch_workers

    (tmp_path / "snn_launcher_cases_fork.py").write_text(LAUNCHER_CASES)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = importlib.import_module("snn_launcher_cases_fork")
    started = time.monotonic()
    with pytest.raises(WorkerFailedError, match="failed while a forked child lives on"):
        launch_workers(2, cases.fork_then_raise_on_rank_1)
    elapsed = time.monotonic() - started
    print(f"\n[forked child] failure reported after {elapsed:.1f} s")
    assert elapsed < 15, "found by polling the exit status, not when the forked child ended (20 s)"
    assert FAILURE_GRACE_S < 15


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_launcher_signals_keep_what_was_ignored_and_restore_the_rest(interruptible: None) -> None:
    from snn.train.distributed import _LauncherSignal, _LauncherSignals

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with _LauncherSignals() as signals:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(_LauncherSignal) as raised:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs between bytecodes
            assert raised.value.name == "SIGTERM"
            with pytest.raises(KeyboardInterrupt):
                with signals.sigint_deferred():
                    os.kill(os.getpid(), signal.SIGINT)  # held back (a worker may be starting) ...
                    time.sleep(0.05)
                    held = True
                time.sleep(1)  # ... not lost: it arrives when the block ends
            assert held
            assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
            signals.ignore_all()  # while stopping the workers: a second signal is ignored
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)

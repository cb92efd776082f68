"""A data-parallel worker's environment and interruptions: the rendezvous variables a launcher
sets are checked and named, a group that cannot form is one line, Ctrl-C ends as in one process,
and only rank 0 reports."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from snn import cli
from snn.train import command, distributed
from snn.train.config import TrainConfig
from snn.train.loop import check_settings

RENDEZVOUS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in RENDEZVOUS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_launched_rank_reads_and_checks_the_launcher_variables(clean_environment: pytest.MonkeyPatch) -> None:
    env = clean_environment
    assert distributed.launched_rank() is None  # one process
    env.setenv("WORLD_SIZE", "1")
    env.setenv("RANK", "0")
    assert distributed.launched_rank() is None  # a group of one
    env.setenv("WORLD_SIZE", "4")
    env.setenv("RANK", "3")
    env.setenv("LOCAL_RANK", "1")
    assert distributed.launched_rank() == (3, 4, 1)
    for name, value, message in [
        ("RANK", "4", "RANK: expected an integer from 0 to 3, got '4'"),
        ("RANK", "-1", "RANK: expected an integer from 0 to 3, got '-1'"),
        ("WORLD_SIZE", "two", "WORLD_SIZE: expected an integer >= 1, got 'two'"),
        ("LOCAL_RANK", "abc", "LOCAL_RANK: expected an integer >= 0, got 'abc'"),
    ]:
        with env.context() as inner:
            inner.setenv(name, value)
            with pytest.raises(ValueError, match=message):
                distributed.launched_rank()
    env.delenv("LOCAL_RANK")  # every worker of a machine would take its first GPU
    with pytest.raises(ValueError, match="^LOCAL_RANK: expected an integer set by the launcher"):
        distributed.launched_rank()
    env.setenv("LOCAL_RANK", "0")
    env.delenv("RANK")  # WORLD_SIZE alone: every process would train alone into one folder
    with pytest.raises(ValueError, match="^RANK: expected an integer set by the launcher"):
        distributed.launched_rank()
    env.setenv("WORLD_SIZE", "1")  # one process: a missing or stray RANK does not matter
    assert distributed.launched_rank() is None
    env.delenv("WORLD_SIZE")
    env.setenv("RANK", "7")
    assert distributed.launched_rank() is None


def test_local_world_size(clean_environment: pytest.MonkeyPatch) -> None:
    assert distributed.local_world_size(8) == 8
    clean_environment.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.local_world_size(8) == 4
    clean_environment.setenv("LOCAL_WORLD_SIZE", "x")
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE: expected an integer >= 1, got 'x'"):
        distributed.local_world_size(8)


def test_snn_train_names_a_bad_rendezvous_variable(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = clean_environment
    env.setenv("WORLD_SIZE", "2")
    env.setenv("RANK", "0")
    args = argparse.Namespace(json=False, out=str(tmp_path / "run"))
    stdout, stderr = io.StringIO(), io.StringIO()
    assert command.run(args, stdout=stdout, stderr=stderr) == 2
    assert stderr.getvalue().startswith("snn train: error: LOCAL_RANK: expected an integer set by the launcher")
    env.setenv("LOCAL_RANK", "0")
    for missing, message in [
        ("MASTER_ADDR", "MASTER_ADDR: expected the address of rank 0's machine"),
        ("MASTER_PORT", "MASTER_PORT: expected an integer set by the launcher"),
    ]:
        if missing == "MASTER_PORT":
            env.setenv("MASTER_ADDR", "127.0.0.1")
        stdout, stderr = io.StringIO(), io.StringIO()
        assert command.run(args, stdout=stdout, stderr=stderr) == 2
        assert stderr.getvalue().startswith(f"snn train: error: {message}") and stderr.getvalue().count("\n") == 1
    env.delenv("RANK")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert command.run(args, stdout=stdout, stderr=stderr) == 2
    assert "RANK: expected an integer set by the launcher" in stderr.getvalue()
    assert not (tmp_path / "run").exists()


def test_a_group_that_cannot_form_is_one_line(clean_environment: pytest.MonkeyPatch) -> None:
    """Rank 0 cannot listen on a port another program holds: ProcessGroupError naming it."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = clean_environment
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))):
        env.setenv(name, value)
    try:
        with pytest.raises(distributed.ProcessGroupError, match=f"rank 0 could not join the process group at 127.0.0.1:{port}: "):
            distributed.init_worker(timeout_s=5)
    finally:
        holder.close()


def test_gpus_are_counted_per_machine() -> None:
    """2 machines with 4 GPUs each run 8 workers: rank 0 checks its machine's 4."""
    config = TrainConfig(limit=200, epochs=1, device="cuda")
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
            mock.patch.object(torch.cuda, "device_count", return_value=4), \
            mock.patch("snn.train.loop._prepare") as prepare:
        check_settings(config, world_size=8, local_world_size=4)
        assert prepare.called
        with pytest.raises(ValueError, match=r"device: 8 processes need 8 GPUs \(one each\), torch sees 4"):
            check_settings(config, world_size=8)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_stops_the_workers_and_interrupts_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interruptible: None
) -> None:
    (tmp_path / "snn_sleeping_workers.py").write_text("import time\n\n\ndef sleep_long():\n    time.sleep(60)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = importlib.import_module("snn_sleeping_workers")
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            distributed.launch(2, cases.sleep_long)
    finally:
        timer.cancel()


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask") or os.name != "posix", reason="POSIX signal masks")
def test_ctrl_c_while_a_worker_starts_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interruptible: None) -> None:
    # starting a worker imports torch in a new interpreter: seconds on a busy machine, during
    # which the launcher once ignored SIGINT, so a Ctrl-C then was dropped and training went on
    import multiprocessing.process

    (tmp_path / "snn_sleeping_workers_2.py").write_text("import time\n\n\ndef sleep_long():\n    time.sleep(60)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = importlib.import_module("snn_sleeping_workers_2")
    start = multiprocessing.process.BaseProcess.start

    def start_then_ctrl_c(self: Any) -> None:
        start(self)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_then_ctrl_c)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        distributed.launch(2, cases.sleep_long)
    assert time.monotonic() - began < 40  # the workers were stopped, not waited for (60 s)


def test_only_rank_0_reports_an_interruption(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["train", "--json"]) == 130
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["train", "--json"]) == 130
    out, err = capsys.readouterr()
    assert err == "snn train: interrupted\n" and '"interrupted"' in out


def test_a_vanished_peer_is_recognised() -> None:
    assert command._peer_lost(RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]:4123"))
    assert not command._peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    network_error = getattr(torch.distributed, "DistNetworkError", None)
    if network_error is not None:
        assert command._peer_lost(network_error("connection refused"))
    backend_error = getattr(torch.distributed, "DistBackendError", None)
    if backend_error is not None:  # a timeout or this rank's own collective failure: not relabelled
        assert not command._peer_lost(backend_error("Watchdog caught collective operation timeout"))

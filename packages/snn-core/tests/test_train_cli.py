"""The command-line contract of ``snn train``: ``--out`` is checked before any work, and messages
speak the command line (the option names, the limits ``--help`` shows), not Python.

Written for issue 14 (items 5 and 10); each test failed before the change it guards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason='snn train needs the demo extra: pip install "snn-core[demo]"')

from snn.train import command

TINY = ["--epochs", "1", "--T", "2", "--limit", "200", "--hidden", "32", "--batch-size", "50", "--no-plots"]


def run_train(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = command.run(parser.parse_args(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def has_learner(name: str) -> bool:
    from snn.plugins import get_registry

    return name in get_registry().learners


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command reaches the data: every check must come before any work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("snn train started working before it checked --out")

    monkeypatch.setattr("snn.train.loop.load_digits_split", refuse)


@pytest.mark.parametrize("case", ["file", "under-a-file", "proc"])
def test_bad_out_is_refused_before_any_work(tmp_path: Path, case: str, no_training: None) -> None:
    existing = tmp_path / "afile"
    existing.write_text("x")
    if case == "file":
        out, expected = existing, f"--out {existing}: exists and is not a folder"
    elif case == "under-a-file":
        out, expected = existing / "run", f"--out {existing / 'run'}: {existing} is not a folder"
    else:
        if not Path("/proc").is_dir():
            pytest.skip("needs Linux's /proc")
        out, expected = Path("/proc/snn-train-nope"), "--out /proc/snn-train-nope: cannot create the folder"
    code, stdout, stderr = run_train([*TINY, "--out", str(out), "--json"])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {expected}") and stderr.count("\n") == 1, stderr
    assert json.loads(stdout)["error"].startswith(expected)


def test_bad_setting_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    code, _, stderr = run_train([*TINY, "--loss", "nope", "--out", str(out)])
    assert code == 2 and "unknown loss 'nope'" in stderr
    assert not (tmp_path / "a").exists()  # the folders created for --out are removed again


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "5"], "--limit: expected an integer from 20 (two images per class) to 1797 (all of them), got 5; "
                           "leave it out to use all 1797 images"),
        (["--limit", "1798"], "--limit: expected an integer from 20 (two images per class) to 1797 (all of them), got 1798"),
        (["--threads", "-2"], "--threads: expected an integer >= 0 (0 keeps torch's default), got -2"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
        (["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
        (["--device", "tpu"], "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["--device", "meta"], "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'"),
        (["--device", "cpu:3"], "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cpu:3'"),
        (["--threads", "100000"], f"--threads: expected at most the {os.cpu_count()} CPU cores here"),
        (["--nproc", "0"], "--nproc: expected an integer >= 1, got 0"),
        (["--seed", str(2**64)], f"--seed: expected an integer in [-2**63, 2**64 - 4] (torch's seed range), got {2**64}"),
    ],
)
def test_messages_name_the_command_line_options(tmp_path: Path, argv: list[str], message: str) -> None:
    code, _, stderr = run_train([*TINY, *argv, "--out", str(tmp_path / "x")])
    assert code == 2
    assert stderr.startswith(f"snn train: error: {message}") and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "x").exists()


def test_help_shows_the_limits_the_messages_enforce() -> None:
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "20 <= N <= 1797" in text  # --limit
    assert ">= 0; 0 keeps torch's default" in text  # --threads


def test_unknown_learner_message_with_online_learners_installed(tmp_path: Path) -> None:
    if not has_learner("ottt"):
        pytest.skip("needs snn-online")
    code, _, stderr = run_train([*TINY, "--learner", "foo", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "unknown learner 'foo'; known: 'bptt', 'fptt', 'ottt', 'sltt'" in stderr
    assert "'bptt' (back-propagation through time) is built in" in stderr
    assert "online learner 'foo'" not in stderr and "pip install" not in stderr


def test_unknown_learner_message_without_online_learners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snn import plugins

    monkeypatch.setenv("SNN_DISABLED_PLUGINS", "online")
    plugins.reset()
    try:
        code, _, stderr = run_train([*TINY, "--learner", "ottt", "--out", str(tmp_path / "x")])
    finally:
        monkeypatch.delenv("SNN_DISABLED_PLUGINS")
        plugins.reset()
    assert code == 2
    assert "unknown learner 'ottt'; known: 'bptt'." in stderr
    assert 'pip install "snn-core[online]"' in stderr and "pip install -e packages/snn-online" in stderr


def test_export_nir_writes_the_trained_network(tmp_path: Path) -> None:
    """``--export-nir``: the NIR graph, imported back, computes what the trained network does."""
    nir = pytest.importorskip("nir")
    import torch

    from snn import functional
    from snn.nir import import_from_nir
    from snn.train.evaluate import load_model

    path = tmp_path / "net.nir"
    code, stdout, stderr = run_train([*TINY, "--out", str(tmp_path / "run"), "--export-nir", str(path), "--json"])
    assert code == 0, stderr
    assert str(path.resolve()) in json.loads(stdout.splitlines()[-1])["files"]
    assert isinstance(nir.read(path), nir.NIRGraph)
    trained = load_model(tmp_path / "run").network.eval()
    imported = import_from_nir(path, step_mode="m").eval()
    functional.set_step_mode(imported, "m")
    x = torch.rand(2, 5, 64) * 2

    def spikes_of(net: torch.nn.Module) -> list[torch.Tensor]:
        """Every neuron layer's output, in forward order."""
        from snn.neuron import BaseNode

        found: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: found.append(out))
                 for m in net.modules() if isinstance(m, BaseNode)]
        with torch.no_grad():
            functional.reset_net(net)
            net(x)
        for hook in hooks:
            hook.remove()
        return found

    expected, got = spikes_of(trained), spikes_of(imported)
    assert len(got) == len(expected) >= 2 and sum(float(s.sum()) for s in expected) > 0
    for a, b in zip(got, expected):
        # the same weights and neurons, the same matrix shapes: the same arithmetic
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_export_nir_to_a_relative_path_is_reported_where_it_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other outputs are named inside the run folder; the NIR file where it was written
    (a relative --export-nir is relative to the working directory, not to --out)."""
    pytest.importorskip("nir")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_train([*TINY, "--out", "run", "--export-nir", "net.nir", "--json"])
    assert code == 0, stderr
    written = tmp_path.resolve() / "net.nir"
    assert written.is_file() and not (tmp_path / "run" / "net.nir").exists()
    assert str(written) in json.loads(stdout.splitlines()[-1])["files"]
    assert str(written) in stderr and "run/net.nir" not in stderr


@pytest.mark.parametrize("case", ["folder", "no parent", "conv"])
def test_bad_export_nir_is_refused_before_any_work(tmp_path: Path, case: str, no_training: None) -> None:
    pytest.importorskip("nir")
    argv = [*TINY, "--out", str(tmp_path / "run")]
    if case == "folder":
        argv += ["--export-nir", str(tmp_path)]
        expected = f"--export-nir {tmp_path}: is a folder"
    elif case == "no parent":
        argv += ["--export-nir", str(tmp_path / "missing" / "net.nir")]
        expected = f"--export-nir {tmp_path / 'missing' / 'net.nir'}: the folder {tmp_path / 'missing'} does not exist"
    else:
        argv += ["--model", "conv", "--export-nir", str(tmp_path / "net.nir")]
        expected = f"--export-nir {tmp_path / 'net.nir'}: this network has no NIR form: 1 (BatchNorm2d)"
    code, stdout, stderr = run_train(argv)
    assert code == 2
    assert stderr.startswith(f"snn train: error: {expected}"), stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_matplotlib_is_found_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plots are written last: without matplotlib the run must stop before it trains, not after."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    argv = [arg for arg in TINY if arg != "--no-plots"]
    code, _, stderr = run_train([*argv, "--out", str(tmp_path / "x")])
    assert code == 1 and "matplotlib" in stderr and "epoch" not in stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option", ["--out", "--resume", "--export-nir"])
def test_an_empty_path_is_refused(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Path("") is the current folder: a run would be written (or looked for) there
    parser = argparse.ArgumentParser(prog="snn train")
    command.add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([option, ""])
    assert exit_info.value.code == 2
    assert f"argument {option}: expected a path, got ''" in capsys.readouterr().err


def test_resume_of_a_file_says_it_is_not_a_folder(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, stderr = run_train(["--resume", str(afile)])
    assert code == 2 and f"--resume {afile}: not a folder (a run folder of snn train)" in stderr

"""``snn doctor`` and the ``snn`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import snn
from snn import cli, plugins
from snn.doctor import collect, render_json, render_table
from snn.registry import BackendRegistrar, LossRegistrar

BACKEND_KEYS = {"name", "plugin", "available", "reason", "devices", "dtypes", "surrogates", "kernels"}


def _probe_plugin(reason: str | None) -> types.SimpleNamespace:
    @snn.hookimpl
    def snn_register_backends(register: BackendRegistrar) -> None:
        register(
            "offline",
            {"multi_step": "math:sqrt"},
            models=("if", "lif"),
            devices=("cuda",),
            emulated_devices=("cpu",),
            dtypes=(torch.float32, torch.float16),
            surrogates=("ATan", "Sigmoid"),
            probe=lambda: reason,
            description="a test backend",
        )

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def test_collect_reports_in_tree_plugins(in_tree_only: None) -> None:
    report = collect()
    assert report["snn"] == snn.__version__ and report["torch"] == torch.__version__
    assert {p["name"] for p in report["plugins"]} == {"neurons", "torch", "strategies", "losses"}
    assert all(set(p) == {"name", "distribution", "version", "error"} for p in report["plugins"])
    assert all(p["error"] is None for p in report["plugins"])
    (torch_backend,) = report["backends"]
    assert BACKEND_KEYS <= set(torch_backend)
    assert torch_backend["name"] == "torch" and torch_backend["plugin"] == "torch"
    assert torch_backend["available"] is True and torch_backend["reason"] is None
    assert "cpu" in torch_backend["devices"] and "float32" in torch_backend["dtypes"]
    assert "lif/multi_step" in torch_backend["kernels"] and "Sigmoid" in torch_backend["surrogates"]
    assert [s["name"] for s in report["strategies"]] == [
        "loop", "t_last", "chunked", "seq_to_ann", "t_last_seq_to_ann", "checkpointed"
    ]
    assert all(s["plugin"] == "strategies" for s in report["strategies"])
    losses = {loss["name"]: loss for loss in report["losses"]}
    assert set(losses) == {"tet", "spike_similar", "ce_rate", "mse_count"}
    assert losses["tet"]["signature"] == "sequence_classification"
    assert report["learners"] == [] and report["failures"] == []
    assert report["switches"]["SNN_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    assert set(report["switches"]) == {"SNN_DISABLE_PLUGIN_AUTOLOAD", "SNN_DISABLED_PLUGINS", "SNN_TRACE_PLUGINS"}
    assert json.loads(render_json(report)) == report


def test_unavailable_backend_and_failures_are_rendered(in_tree_only: None, temporary_plugin: Any) -> None:
    def snn_register_losses(register: LossRegistrar) -> None:
        raise ImportError("needs libfoo")

    temporary_plugin(_probe_plugin("no CUDA device"), name="offline-plugin")
    temporary_plugin(types.SimpleNamespace(snn_register_losses=snn.hookimpl(snn_register_losses)), name="needs-foo")
    report = collect()
    offline = next(b for b in report["backends"] if b["name"] == "offline")
    assert offline == {
        **offline,
        "plugin": "offline-plugin",
        "available": False,
        "reason": "no CUDA device",
        "devices": ["cuda"],
        "emulated_devices": ["cpu"],
        "dtypes": ["float16", "float32"],
        "surrogates": ["ATan", "Sigmoid"],
        "kernels": ["if/multi_step", "lif/multi_step"],
    }
    (failure,) = report["failures"]
    assert failure["plugin"] == "needs-foo" and failure["stage"] == "hook" and "needs libfoo" in failure["error"]
    row = next(p for p in report["plugins"] if p["name"] == "needs-foo")
    assert "needs libfoo" in row["error"]
    table = render_table(report)
    assert "offline (plugin offline-plugin" in table and "NOT AVAILABLE: no CUDA device" in table
    assert "cpu (emulated)" in table
    assert "needs-foo" in table and "FAILED" in table and "needs libfoo" in table
    assert 'pip install "snn-core[online]"' in table  # no learner installed


def test_cli_doctor_table_and_json(in_tree_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    for section in ("Plugins", "Backends", "Forward strategies", "Losses", "Online learners", "Failures"):
        assert section in out.splitlines()
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"plugins", "backends", "strategies", "losses", "learners", "failures"} <= set(report)


def test_cli_doctor_exit_status_is_1_with_failures(in_tree_only: None, temporary_plugin: Any, capsys: pytest.CaptureFixture[str]) -> None:
    def snn_register_losses(register: LossRegistrar) -> None:
        register("tet", lambda y, t: y.sum())  # clashes with the built-in

    temporary_plugin(types.SimpleNamespace(snn_register_losses=snn.hookimpl(snn_register_losses)), name="dup")
    assert cli.main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (failure,) = report["failures"]
    assert failure["stage"] == "clash" and {failure["plugin"], failure["clash_with"]} == {"dup", "losses"}


def test_python_dash_m_snn_doctor_json() -> None:
    env = {**os.environ, "SNN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "snn", "doctor", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {p["name"] for p in report["plugins"]} == {"neurons", "torch", "strategies", "losses"}


def test_cli_help_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert snn.__version__ in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["teleport"]) == 2
    assert "invalid choice: 'teleport'" in capsys.readouterr().err
    assert cli.main(["doctor", "--bogus"]) == 2


def test_usage_errors_are_one_line_naming_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """As the subcommands' own errors: one line ``snn <command>: error: ...`` (the usage block
    stays on --help), and with --json also a JSON object on stdout."""
    capsys.readouterr()
    assert cli.main(["doctor", "--bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "snn doctor: error: unrecognized arguments: --bogus (see snn doctor --help)\n"
    assert captured.out == ""
    assert cli.main(["train", "--lr", "abc", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("snn train: error: argument --lr: invalid float value: 'abc'")
    assert captured.err.count("\n") == 1
    assert json.loads(captured.out) == {"error": "argument --lr: invalid float value: 'abc'", "error_type": "UsageError"}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                      "you tried to allocate 256000000000 bytes. Error code 12 (Cannot allocate memory)"),
         "can't allocate memory: you tried to allocate 256000000000 bytes. Error code 12 (Cannot allocate memory)"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore lines"),
         "CUDA out of memory. Tried to allocate 20.00 GiB"),
        (MemoryError(), "MemoryError"),
    ],
    ids=["cpu-allocator", "cuda", "python"],
)
def test_an_allocation_failure_is_one_line(
    error: BaseException, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import snn.bench

    def run(args: object) -> int:
        raise error

    monkeypatch.setattr(snn.bench, "run", run)
    assert cli.main(["bench", "--json"]) == 1
    captured = capsys.readouterr()
    message = f"out of memory: {reason}; try smaller sizes"
    assert captured.err == f"snn bench: error: {message}\n"
    assert json.loads(captured.out) == {"error": message, "error_type": "OutOfMemoryError"}
    monkeypatch.setattr(snn.bench, "run", lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error keeps its traceback
        cli.main(["bench"])


def test_cli_offers_only_installed_subcommands_and_reports_broken_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "snn_broken_subcommand_mod.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        cli,
        "SUBCOMMANDS",
        (
            *cli.SUBCOMMANDS,
            cli.Subcommand("ghost", "snn_no_such_module_anywhere.sub", "never offered"),
            cli.Subcommand("broken", "snn_broken_subcommand_mod", "fails to import"),
        ),
    )
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "ghost" not in out and "broken" in out
    assert cli.main(["ghost"]) == 2
    assert cli.main(["broken"]) == 1
    assert "cannot load snn_broken_subcommand_mod: RuntimeError: half installed" in capsys.readouterr().err


# -- first-party backends that are not installed (issue 14.12) ---------------------------------


def test_missing_first_party_backends_are_listed_with_their_install_commands(
    in_tree_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import snn.doctor

    monkeypatch.setattr(snn.doctor, "_installed_version", lambda distribution: None)
    report = collect()
    missing = {m["name"]: m for m in report["missing_backends"]}
    assert set(missing) == {"triton", "cupy", "cpp"}  # autoload off: no first-party backend registered
    assert missing["triton"] == {
        "name": "triton",
        "distribution": "snn-triton",
        "installed": None,
        "from_index": 'pip install "snn-core[triton]"',
        "from_checkout": "pip install -e packages/snn-triton",
    }
    assert missing["cupy"]["from_checkout"] == 'pip install -e "packages/snn-cupy[cuda12]"'
    assert missing["cpp"]["from_index"] == 'pip install "snn-core[cpp]"'
    assert missing["cpp"]["from_checkout"] == "pip install -e packages/snn-cpp"
    table = render_table(report)
    backends = table[table.index("\nBackends\n"):table.index("\nForward strategies\n")]
    assert "triton (snn-triton): not installed" in backends and "cupy (snn-cupy): not installed" in backends
    assert 'pip install "snn-core[triton]"' in backends and "pip install -e packages/snn-triton" in backends
    assert json.loads(render_json(report)) == report


def test_missing_backends_follow_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against importlib.metadata: a registered backend is never listed; an installed but
    unregistered one (its plugin disabled) says so instead of giving an install command."""
    import importlib.metadata

    plugins.reset()
    try:
        registered = {backend["name"] for backend in collect()["backends"]}
        monkeypatch.setenv("SNN_DISABLED_PLUGINS", "triton,cupy,cpp")
        plugins.reset()
        report = collect()
    finally:
        monkeypatch.delenv("SNN_DISABLED_PLUGINS")
        plugins.reset()
    missing = {m["name"]: m for m in report["missing_backends"]}
    assert set(missing) == {"triton", "cupy", "cpp"}
    table = render_table(report)
    for name, distribution in (("triton", "snn-triton"), ("cupy", "snn-cupy"), ("cpp", "snn-cpp")):
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
        assert missing[name]["installed"] == version
        if version is None:
            assert name not in registered
            assert f"{name} ({distribution}): not installed" in table
        else:
            assert f"{name} ({distribution} {version}): installed but not registered" in table


def test_no_learner_hint_works_from_a_checkout(in_tree_only: None) -> None:
    table = render_table(collect())
    learners = table[table.index("\nOnline learners\n"):]
    assert 'pip install "snn-core[online]"' in learners
    assert "from a checkout of the snn repository, at its root: pip install -e packages/snn-online" in learners


@pytest.mark.parametrize("when", ["import", "run"])
def test_ctrl_c_prints_one_line_and_exits_130(when: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from snn import cli

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    if when == "import":  # while the subcommand's module (and torch) is still being imported
        monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    else:
        import snn.doctor

        monkeypatch.setattr(snn.doctor, "run", interrupted)
    assert cli.main(["doctor", "--json"]) == 130
    out, err = capsys.readouterr()
    assert err == "snn doctor: interrupted\n"
    assert json.loads(out) == {"error": "interrupted", "error_type": "KeyboardInterrupt"}

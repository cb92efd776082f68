"""The plugin system end to end: entry points, switches, failures, threads, provenance, errors."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import snn
from snn import plugins
from snn.doctor import collect, render_table
from snn.errors import (
    BackendNotFoundError,
    OnlineLearnerNotFoundError,
    RegistryEntryNotFoundError,
)
from snn.registry import LossRegistrar, Provenance, Registry, StrategyRegistrar

pytest_plugins = ["pytester"]

PLUGIN_SOURCE = '''
import snn
from snn.learning import OnlineLearner


def fake_strategy(module, x_seq, **options):
    """Calls the module on the whole sequence."""
    return module(x_seq)


def fake_loss(y_seq, target):
    """Sum of outputs."""
    return y_seq.sum()


class FakeLearner(OnlineLearner):
    def train_sequence(self, model, optimizer, x_seq, target_seq, f_loss_t, state=None, **options):
        return x_seq.sum(), None


@snn.hookimpl
def snn_register_forward_strategies(register):
    register("{prefix}_strategy", fake_strategy)


@snn.hookimpl
def snn_register_losses(register):
    register("{prefix}_loss", fake_loss, signature="sequence_classification")


@snn.hookimpl
def snn_register_online_learners(register):
    register("{prefix}_learner", FakeLearner())


@snn.hookimpl
def snn_register_backends(register):
    import torch
    register(
        "{prefix}_backend",
        {{"multi_step": "snn.backends.torch:multi_step"}},
        models=("lif",),
        devices=("cpu",),
        dtypes=(torch.float32,),
        surrogates=("Sigmoid",),
        probe=lambda: None,
    )
'''


def make_distribution(
    root: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an installed-looking distribution (``*.dist-info`` plus modules) into ``root`` and put it on sys.path."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[snn]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution ``snn-fakeplug 1.2.3`` with entry point ``fakeplug``; the manager is rebuilt around the test."""
    module = f"snn_fakeplug_{uuid.uuid4().hex[:8]}"
    make_distribution(
        tmp_path, monkeypatch, "snn-fakeplug", "1.2.3", {"fakeplug": module}, {module: PLUGIN_SOURCE.format(prefix="fake")}
    )
    plugins.reset()
    yield module
    plugins.reset()


def namespace_plugin(**hooks: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: snn.hookimpl(fn) for name, fn in hooks.items()})


# ---------------------------------------------------------------------------------------------
# entry points and switches
# ---------------------------------------------------------------------------------------------


def test_entry_point_plugin_is_loaded_with_provenance(fake_dist: str) -> None:
    registry = plugins.get_registry()
    expected = Provenance("fakeplug", "snn-fakeplug", "1.2.3")
    assert registry.plugins["fakeplug"] == expected
    assert registry.strategy("fake_strategy").provenance == expected
    assert registry.loss("fake_loss").provenance == expected
    assert registry.loss("fake_loss").metadata == {"signature": "sequence_classification"}
    assert registry.learner("fake_learner").provenance == expected
    assert registry.backend("fake_backend").provenance == expected
    # In-tree plugins keep their own provenance.
    assert registry.strategy("loop").provenance.plugin == "strategies"
    assert registry.strategy("loop").provenance.distribution == "snn-core"
    x = torch.ones(3, 2)
    assert torch.equal(registry.strategy("fake_strategy").implementation(lambda t: t * 2, x), x * 2)
    report = collect()
    row = next(p for p in report["plugins"] if p["name"] == "fakeplug")
    assert row == {"name": "fakeplug", "distribution": "snn-fakeplug", "version": "1.2.3", "error": None}


def test_disable_autoload_switch_keeps_only_in_tree_plugins(fake_dist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    registry = plugins.get_registry()
    assert set(registry.plugins) == {"neurons", "torch", "strategies", "losses"}
    assert "fake_strategy" not in registry.strategies and "loop" in registry.strategies
    assert fake_dist not in sys.modules  # the plugin module was not even imported
    # an "unknown" error says why an installed plugin's names may be missing, beside the install hint
    with pytest.raises(RegistryEntryNotFoundError, match="installed plugins are not loaded: SNN_DISABLE_PLUGIN_AUTOLOAD is set"):
        registry.strategy("fake_strategy")


def test_disabled_plugins_switch_blocks_named_entry_points(
    fake_dist: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SNN_DISABLED_PLUGINS", " fakeplug , torch")
    plugins.reset()
    with caplog.at_level(logging.WARNING, logger="snn"):
        registry = plugins.get_registry()
    assert "fakeplug" not in registry.plugins and "fake_strategy" not in registry.strategies
    assert fake_dist not in sys.modules
    # In-tree plugins are essential: named, but still loaded, with a warning.
    assert "torch" in registry.backends
    assert any("'torch' is essential" in r.getMessage() for r in caplog.records)
    with pytest.raises(RegistryEntryNotFoundError, match=r"plugins disabled by SNN_DISABLED_PLUGINS: 'fakeplug'$"):
        registry.strategy("fake_strategy")
    monkeypatch.setenv("SNN_DISABLED_PLUGINS", "someone-else")
    plugins.reset()
    assert "fake_strategy" in plugins.get_registry().strategies


# ---------------------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------------------


def test_broken_plugin_is_recorded_and_others_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"snn_good_{uuid.uuid4().hex[:8]}"
    broken = f"snn_broken_{uuid.uuid4().hex[:8]}"
    make_distribution(
        tmp_path / "a", monkeypatch, "snn-good", "0.3", {"good": good}, {good: PLUGIN_SOURCE.format(prefix="good")}
    )
    make_distribution(
        tmp_path / "b", monkeypatch, "snn-broken", "0.9", {"broken": broken},
        {broken: "import snn_this_dependency_does_not_exist\n"},
    )
    plugins.reset()
    try:
        with caplog.at_level(logging.WARNING, logger="snn"):
            registry = plugins.get_registry()
            plugins.get_registry()
        assert "good_strategy" in registry.strategies and "loop" in registry.strategies
        (failure,) = [f for f in registry.failures if f.plugin == "broken"]
        assert failure.stage == "import"
        assert (failure.distribution, failure.version) == ("snn-broken", "0.9")
        assert "snn_this_dependency_does_not_exist" in failure.error
        logged = [r for r in caplog.records if "snn_this_dependency_does_not_exist" in r.getMessage()]
        assert len(logged) == 1  # logged once, not on every lookup
        # Asking for something missing mentions the recorded failure.
        with pytest.raises(RegistryEntryNotFoundError, match="plugin broken \\(snn-broken 0.9\\) failed at import"):
            registry.strategy("broken_strategy")
        row = next(p for p in collect()["plugins"] if p["name"] == "broken")
        assert row["distribution"] == "snn-broken" and "ModuleNotFoundError" in row["error"]
    finally:
        plugins.reset()


def test_hook_that_raises_is_recorded_and_other_hooks_still_run(temporary_plugin: Any) -> None:
    def snn_register_losses(register: LossRegistrar) -> None:
        raise RuntimeError("losses exploded")

    def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
        register("survivor", lambda module, x_seq: x_seq)

    registry = temporary_plugin(
        namespace_plugin(snn_register_losses=snn_register_losses, snn_register_forward_strategies=snn_register_forward_strategies),
        name="exploding",
    )
    (failure,) = [f for f in registry.failures if f.plugin == "exploding"]
    assert failure.stage == "hook"
    assert "snn_register_losses" in failure.error and "RuntimeError: losses exploded" in failure.error
    assert "survivor" in registry.strategies and "tet" in registry.losses


CLASH_SOURCE = """
import snn


@snn.hookimpl
def snn_register_forward_strategies(register):
    register("loop", lambda module, x_seq: x_seq)
    register("copycat_only", lambda module, x_seq: x_seq)
"""


def test_clashing_plugin_names_both_plugins_in_failure_and_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"snn_copycat_{uuid.uuid4().hex[:8]}"
    make_distribution(tmp_path, monkeypatch, "snn-copycat", "2.0", {"copycat": module}, {module: CLASH_SOURCE})
    plugins.reset()
    try:
        registry = plugins.get_registry()
        (failure,) = [f for f in registry.failures if f.plugin == "copycat"]
        assert failure.stage == "clash"
        assert failure.clash_name == "loop" and failure.clash_with == "strategies"
        assert "'copycat'" in failure.error and "'strategies'" in failure.error
        assert "copycat" in failure.describe() and "strategies" in failure.describe()
        # The in-tree registration wins and keeps working.
        assert registry.strategy("loop").provenance.plugin == "strategies"
        report = collect()
        (row,) = [f for f in report["failures"] if f["plugin"] == "copycat"]
        assert row["clash_with"] == "strategies" and row["clash_name"] == "loop"
        assert row["distribution"] == "snn-copycat" and row["version"] == "2.0"
        plugin_row = next(p for p in report["plugins"] if p["name"] == "copycat")
        assert "strategies" in plugin_row["error"]
        table = render_table(report)
        assert any("copycat" in line and "strategies" in line for line in table.splitlines()), table
    finally:
        plugins.reset()


def test_clash_between_two_third_party_plugins_names_both(temporary_plugin: Any) -> None:
    def make_plugin() -> types.SimpleNamespace:
        def snn_register_losses(register: LossRegistrar) -> None:
            register("shared_name", lambda y, t: y.sum())

        return namespace_plugin(snn_register_losses=snn_register_losses)

    temporary_plugin(make_plugin(), name="first_party")
    registry = temporary_plugin(make_plugin(), name="second_party")
    (failure,) = [f for f in registry.failures if f.stage == "clash"]
    assert {failure.plugin, failure.clash_with} == {"first_party", "second_party"}
    assert registry.loss("shared_name").provenance.plugin == failure.clash_with
    assert "first_party" in render_table(collect()) and "second_party" in render_table(collect())


def test_in_tree_names_win_against_temporary_plugins(temporary_plugin: Any) -> None:
    def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
        register("loop", lambda module, x_seq: x_seq)

    registry = temporary_plugin(namespace_plugin(snn_register_forward_strategies=snn_register_forward_strategies), name="usurper")
    assert registry.strategy("loop").provenance.plugin == "strategies"
    assert [f.plugin for f in registry.failures if f.stage == "clash"] == ["usurper"]


def test_entry_point_named_like_an_in_tree_plugin_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"snn_impostor_{uuid.uuid4().hex[:8]}"
    make_distribution(tmp_path, monkeypatch, "snn-impostor", "1.0", {"torch": module}, {module: PLUGIN_SOURCE.format(prefix="imp")})
    plugins.reset()
    try:
        registry = plugins.get_registry()
        clash = [f for f in registry.failures if f.distribution == "snn-impostor"]
        assert clash and clash[0].stage == "clash" and clash[0].plugin == "torch"
        assert registry.backend("torch").provenance.distribution == "snn-core"
        assert "imp_strategy" not in registry.strategies
    finally:
        plugins.reset()


def test_plugin_with_unknown_hook_fails_validation_and_is_dropped(temporary_plugin: Any) -> None:
    def snn_register_widgets(register: Any) -> None:
        register("widget", object())

    def snn_register_losses(register: LossRegistrar) -> None:
        register("never_registered", lambda y, t: y.sum())

    registry = temporary_plugin(
        namespace_plugin(snn_register_widgets=snn_register_widgets, snn_register_losses=snn_register_losses), name="widgets"
    )
    (failure,) = [f for f in registry.failures if f.plugin == "widgets"]
    assert failure.stage == "validate" and "snn_register_widgets" in failure.error
    assert "never_registered" not in registry.losses
    assert "widgets" not in registry.plugins
    assert "tet" in registry.losses


def test_temporary_plugin_is_undone(temporary_plugin: Any) -> None:
    def snn_register_losses(register: LossRegistrar) -> None:
        register("temporary_loss", lambda y, t: y.sum())

    plugin = namespace_plugin(snn_register_losses=snn_register_losses)
    with plugins.temporary_plugin(plugin, name="temp") as registry:
        assert registry.loss("temporary_loss").provenance.plugin == "temp"
    assert "temporary_loss" not in plugins.get_registry().losses


# ---------------------------------------------------------------------------------------------
# laziness, threads
# ---------------------------------------------------------------------------------------------


def test_import_snn_loads_no_plugin() -> None:
    code = (
        "import sys\n"
        "watched = ('snn.plugins', 'snn.backends.torch', 'snn.strategies', 'snn.losses', 'snn_triton', 'snn_online', 'snn_cupy')\n"
        "import snn\n"
        "print(sorted(m for m in watched if m in sys.modules))\n"
        "import snn.functional\n"
        "print(sorted(m for m in watched if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after_snn, after_functional = result.stdout.strip().splitlines()
    assert after_snn == "[]", result.stdout
    assert after_functional == "[]", result.stdout


def test_sixteen_threads_first_use_build_once(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = 0
    real_build = plugins._build

    def slow_counting_build() -> Any:
        nonlocal builds
        builds += 1
        time.sleep(0.05)  # widen the race window
        return real_build()

    monkeypatch.setattr(plugins, "_build", slow_counting_build)
    plugins.reset()
    barrier = threading.Barrier(16)
    results: list[object] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            barrier.wait()
            results.append(plugins.get_registry())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plugins.reset()
    assert not errors
    assert len(results) == 16 and all(r is results[0] for r in results)
    assert builds == 1


# ---------------------------------------------------------------------------------------------
# typed errors
# ---------------------------------------------------------------------------------------------


def test_unknown_names_raise_typed_errors_listing_known_names(fresh_plugin_manager: Registry) -> None:
    registry = fresh_plugin_manager
    with pytest.raises(RegistryEntryNotFoundError, match="unknown forward strategy 'warp'; known: .*'checkpointed'.*'loop'"):
        registry.strategy("warp")
    with pytest.raises(RegistryEntryNotFoundError, match="unknown loss 'hinge'; known: .*'ce_rate'.*'tet'"):
        registry.loss("hinge")
    with pytest.raises(OnlineLearnerNotFoundError, match=r"unknown online learner 'hebb'.*pip install \"snn-core\[online\]\""):
        registry.learner("hebb")
    with pytest.raises(BackendNotFoundError, match="unknown backend 'quantum'; known: .*'torch'"):
        registry.backend("quantum")
    with pytest.raises(LookupError):  # also a LookupError, for callers that catch those
        registry.loss("hinge")


def test_missing_first_party_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    try:
        with pytest.raises(BackendNotFoundError, match=r'pip install "snn-core\[triton\]"') as info:
            plugins.get_registry().backend("triton")
        assert "from a checkout of the snn repository, at its root: pip install -e packages/snn-triton" in str(info.value)
        with pytest.raises(BackendNotFoundError, match=r'pip install "snn-cupy\[cuda12\]"') as info:
            snn.functional.set_backend(torch.nn.Linear(1, 1), "cupy")
        assert 'pip install -e "packages/snn-cupy[cuda12]"' in str(info.value)
    finally:
        plugins.reset()


# ---------------------------------------------------------------------------------------------
# the pytest fixtures shipped in snn.testing.plugins
# ---------------------------------------------------------------------------------------------


def test_fixtures_usable_through_pytest_plugins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user_plugin='''
        import types
        import snn
        from snn import plugins

        pytest_plugins = ["snn.testing.plugins"]

        @snn.hookimpl
        def snn_register_losses(register):
            register("user_loss", lambda y_seq, target: y_seq.sum())

        def test_temporary(temporary_plugin):
            registry = temporary_plugin(types.SimpleNamespace(snn_register_losses=snn_register_losses), name="user")
            assert registry.loss("user_loss").provenance.plugin == "user"
            assert plugins.get_registry() is registry

        def test_undone_after_previous_test():
            assert "user_loss" not in plugins.get_registry().losses

        def test_fresh(fresh_plugin_manager):
            assert fresh_plugin_manager is plugins.get_registry()
            assert "loop" in fresh_plugin_manager.strategies
        '''
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    assert "user_loss" not in plugins.get_registry().losses


def test_doctor_json_lists_fake_distribution(fake_dist: str, capsys: pytest.CaptureFixture[str]) -> None:
    from snn.cli import main

    status = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == (1 if report["failures"] else 0)
    assert {"name": "fakeplug", "distribution": "snn-fakeplug", "version": "1.2.3", "error": None} in report["plugins"]
    backend = next(b for b in report["backends"] if b["name"] == "fake_backend")
    assert backend["plugin"] == "fakeplug" and backend["available"] is True and backend["kernels"] == ["lif/multi_step"]
    assert {"name": "fake_learner", "plugin": "fakeplug"}.items() <= next(
        i for i in report["learners"] if i["name"] == "fake_learner"
    ).items()


def test_snn_testing_exports_lazily() -> None:
    code = (
        "import sys, snn.testing\n"
        "print('pytest' in sys.modules, 'snn.testing.plugins' in sys.modules)\n"
        "from snn.testing import BackendConformance, fresh_plugin_manager, temporary_plugin\n"
        "import snn.testing.conformance as c, snn.testing.plugins as p\n"
        "print(BackendConformance is c.BackendConformance, temporary_plugin is p.temporary_plugin)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "True", "True"], result.stdout
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        snn.testing.nothing_here  # noqa: B018


def test_plugins_that_exit_or_alias_an_in_tree_module_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin that calls sys.exit at import, one whose entry point names snn's own plugin
    module (``alias = snn.strategies``) and a hook that calls sys.exit: each is a recorded
    failure, and the registry keeps working (they ended the process or broke every lookup)."""
    exiting = f"snn_exiting_{uuid.uuid4().hex[:8]}"
    exiting_hook = f"snn_exiting_hook_{uuid.uuid4().hex[:8]}"
    make_distribution(tmp_path / "a", monkeypatch, "snn-exiting", "0.1", {"exiting": exiting},
                      {exiting: "import sys\nsys.exit('no runtime here')\n"})
    make_distribution(tmp_path / "b", monkeypatch, "snn-alias", "0.1", {"alias": "snn.strategies"}, {})
    make_distribution(tmp_path / "c", monkeypatch, "snn-exiting-hook", "0.1", {"exitinghook": exiting_hook}, {
        exiting_hook: "import sys\nimport snn\n@snn.hookimpl\ndef snn_register_losses(register):\n    sys.exit(3)\n",
    })
    plugins.reset()
    try:
        registry = plugins.get_registry()
        failures = {f.plugin: f for f in registry.failures}
        assert failures["exiting"].stage == "import" and "SystemExit: no runtime here" in failures["exiting"].error
        assert failures["alias"].stage == "validate" and "snn's own plugin module 'snn.strategies'" in failures["alias"].error
        assert failures["exitinghook"].stage == "hook" and "SystemExit: 3" in failures["exitinghook"].error
        assert "loop" in registry.strategies and registry.backend("torch").provenance.distribution == "snn-core"
    finally:
        plugins.reset()


def test_backend_registration_checks_every_argument(temporary_plugin: Any) -> None:
    base = {"models": ("lif",), "devices": ("cpu",), "dtypes": (torch.float32,), "surrogates": ("Sigmoid",),
            "probe": lambda: None}
    kernels = {"multi_step": "snn.backends.torch:multi_step"}
    cases = [
        ("wt1", {"auto_priority": "high"}, "TypeError: auto_priority: expected an int, got str 'high'"),
        ("wt2", {"auto_priority": 1.9}, "TypeError: auto_priority: expected an int, got float 1.9"),
        ("wt3", {"auto_priority": True}, "TypeError: auto_priority: expected an int, got bool True"),
        ("wt4", {"dtypes": torch.float32}, "TypeError: dtypes: expected an iterable of torch.dtype values"),
        ("wt5", {"description": 42}, "TypeError: description: expected a string"),
        ("auto", {}, "ValueError: name: 'auto' is reserved"),
    ]
    for name, override, message in cases:
        def hook(register: Any, name: str = name, override: dict[str, Any] = override) -> None:
            register(name, kernels, **{**base, **override})

        plugin = types.SimpleNamespace(snn_register_backends=snn.hookimpl(hook, specname="snn_register_backends"))
        registry = temporary_plugin(plugin, name=f"plug_{name}")
        assert name not in registry.backends
        assert any(message in f.error for f in registry.failures), (message, [f.error for f in registry.failures])


def test_a_probe_that_returns_no_reason_string_is_reported_not_serialised(
    temporary_plugin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe must return None or a reason string; one returning the exception it caught made
    ``snn doctor --json`` fail to serialise it, and one returning True read as a reason."""
    def hook(register: Any) -> None:
        for name, answer in (("returns_error", ImportError("no runtime")), ("returns_true", True)):
            register(name, {"multi_step": "snn.backends.torch:multi_step"}, models=("lif",), devices=("cpu",),
                     dtypes=(torch.float32,), surrogates=("Sigmoid",), probe=lambda answer=answer: answer)

    registry = temporary_plugin(types.SimpleNamespace(snn_register_backends=snn.hookimpl(hook, specname="snn_register_backends")),
                                name="oddprobes")
    assert "its probe returned ImportError ImportError('no runtime'); expected None or a reason string" == (
        registry.backend("returns_error").unavailable_reason()
    )
    assert "its probe returned bool True" in (registry.backend("returns_true").unavailable_reason() or "")
    from snn import doctor

    assert doctor.run(argparse.Namespace(json=True)) in (0, 1)
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["backends"]}
    assert rows["returns_error"]["available"] is False and "ImportError" in rows["returns_error"]["reason"]


def test_doctor_says_an_in_tree_plugin_cannot_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNN_DISABLED_PLUGINS", "torch,nothing_installed")
    plugins.reset()
    try:
        report = collect()
        assert any("in-tree plugins cannot be disabled: 'torch'" in note for note in report["switch_notes"])
        assert "in-tree plugins cannot be disabled: 'torch'" in render_table(report)
        assert plugins.get_registry().backend("torch").provenance.distribution == "snn-core"
    finally:
        plugins.reset()

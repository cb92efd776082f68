"""Plugin isolation end to end, next to the real sibling plugins (snn-triton, snn-online, the example).

``packages/snn-core/tests/test_plugins.py`` checks the mechanism in process with synthetic plugins
(fake distributions, ``temporary_plugin``). Here the fakes sit next to the installed sibling
distributions and everything runs in fresh interpreters, as a user would meet it:

- a plugin whose import fails, one whose hook raises, plugins that register a name already
  taken (by an in-tree plugin, by another fake, by a real sibling): ``import snn`` loads nothing,
  every real plugin keeps working (backends compute the torch reference's answer, the example's
  loss and snn-online's learners run), and ``python -m snn doctor --json`` reports each failure
  with its stage, its cause and the clashing plugin names (exit status 1);
- ``SNN_DISABLED_PLUGINS`` silences the broken ones;
- the same holds in process after ``snn.plugins.reset()``.

The fake distributions are a ``*.dist-info`` directory (``METADATA`` + ``entry_points.txt``)
and a module, written into ``tmp_path``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from snn import plugins

MISSING_MODULE = "snn_isolation_dependency_that_is_not_installed"

IMPORT_FAILS = f"""
import {MISSING_MODULE}
"""

HOOK_RAISES = """
import snn

@snn.hookimpl
def snn_register_backends(register):
    raise RuntimeError("fake accelerator driver not found")

@snn.hookimpl
def snn_register_losses(register):
    register("raiser_loss", lambda y_seq, target: y_seq.sum())
"""

CLASH_IN_TREE = """
import snn

@snn.hookimpl
def snn_register_forward_strategies(register):
    register("loop", lambda module, x_seq: x_seq)

@snn.hookimpl
def snn_register_losses(register):
    register("shared_fake_loss", lambda y_seq, target: y_seq.sum())
"""

CLASH_OTHER_FAKE = """
import snn

@snn.hookimpl
def snn_register_losses(register):
    register("shared_fake_loss", lambda y_seq, target: y_seq.mean())
"""

# Takes names of the real sibling plugins: the triton backend, the example's loss, an online learner.
CLASH_SIBLINGS = """
import torch
import snn
from snn.learning import OnlineLearner


class Impostor(OnlineLearner):
    def train_sequence(self, model, optimizer, x_seq, target_seq, f_loss_t, state=None, **options):
        raise AssertionError("the impostor learner ran")


@snn.hookimpl
def snn_register_backends(register):
    register("triton", {"multi_step": "snn_isolation_nowhere:kernel"}, models=("lif",), devices=("cpu",),
             dtypes=(torch.float32,), surrogates=("Sigmoid",), probe=lambda: None)


@snn.hookimpl
def snn_register_losses(register):
    register("hinge_rate", lambda y_seq, target: y_seq.sum() * 0)


@snn.hookimpl
def snn_register_online_learners(register):
    register("ottt", Impostor())
"""

# An entry point named like snn-online's ("online"), from another distribution.
SHADOW_ONLINE = """
import snn

@snn.hookimpl
def snn_register_losses(register):
    register("shadow_loss", lambda y_seq, target: y_seq.sum())
"""


def write_distribution(root: Path, dist: str, entry: str, source: str) -> str:
    """A fake installed distribution ``dist`` 1.0 with entry point ``entry`` in group ``snn``; returns its module."""
    module = f"{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[snn]\n{entry} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    return module


def broken_distributions(root: Path) -> Path:
    """The order-independent failures: import error, raising hook, in-tree clash, clash of two fakes."""
    write_distribution(root, "snn-brokenimport", "brokenimport", IMPORT_FAILS)
    write_distribution(root, "snn-raiser", "raiser", HOOK_RAISES)
    write_distribution(root, "snn-clasha", "clasha", CLASH_IN_TREE)
    write_distribution(root, "snn-clashb", "clashb", CLASH_OTHER_FAKE)
    return root


def _env(pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNN_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


# A fresh interpreter: import snn, then use every real plugin. ``argv[1]``: a directory to append
# to sys.path (after site-packages) or "-".
PROBE = r"""
import json, sys
if sys.argv[1] != "-":
    sys.path.append(sys.argv[1])
import snn
watched = ("snn.plugins", "snn_triton", "snn_online", "snn_example_plugin", "snn_cupy")
loaded_at_import = sorted(m for m in watched if m in sys.modules)
import torch
from snn import functional, layer, neuron
from snn.plugins import get_registry

registry = get_registry()
out = {"loaded_at_import": loaded_at_import, "results": {}}
out["failures"] = [
    {"plugin": f.plugin, "distribution": f.distribution, "stage": f.stage, "error": f.error,
     "clash_name": f.clash_name, "clash_with": f.clash_with}
    for f in registry.failures
]
out["backends"] = {n: b.provenance.distribution for n, b in registry.backends.items()}
out["losses"] = {n: i.provenance.distribution for n, i in registry.losses.items()}
out["learners"] = {n: i.provenance.distribution for n, i in registry.learners.items()}
torch.manual_seed(0)
x = torch.rand(5, 3, 4) * 1.5
reference = neuron.LIFNode(step_mode="m")(x)
for name, info in registry.backends.items():
    if info.unavailable_reason() is None and info.serves_device("cpu") and info.serves_model(get_registry().model("lif"), "multi_step"):
        try:
            got = neuron.LIFNode(step_mode="m", backend=name)(x)
            out["results"][name] = bool(torch.equal(got, reference))
        except Exception as exc:
            out["results"][name] = f"{type(exc).__name__}: {exc}"
if "hinge_rate" in registry.losses:
    y = torch.tensor([[[0.9, 0.1]]])
    out["results"]["hinge_rate"] = float(registry.loss("hinge_rate").implementation(y, torch.tensor([0])))
try:
    from snn_online import OTTTLIFNode, OTTTSequential
    model = OTTTSequential(layer.Linear(4, 3), OTTTLIFNode(v_threshold=0.2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    functional.ottt_online_training(model, opt, x.transpose(0, 1), torch.zeros(3, 5, 3),
                                    torch.nn.functional.mse_loss, True)
    out["results"]["ottt"] = bool(not torch.equal(before, model[0].weight))
except Exception as exc:
    out["results"]["ottt"] = f"{type(exc).__name__}: {exc}"
print("JSON:" + json.dumps(out))
"""


def run_probe(env: dict[str, str], append: Path | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(append) if append is not None else "-"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("JSON:")]
    return json.loads(line[5:])


def real_plugins_work(report: dict) -> None:
    """The real siblings are present, provided by their own distributions, and compute right answers."""
    assert report["loaded_at_import"] == []
    assert report["backends"]["torch"] == "snn-core"
    expected = {"example": "snn-example-plugin"}
    if _installed("snn-triton"):
        expected["triton"] = "snn-triton"
    for name, dist in expected.items():
        assert report["backends"].get(name) == dist, report["backends"]
    for name in ("torch", *expected):
        if name in report["results"]:  # ran when available here (triton needs its interpreter or a GPU)
            assert report["results"][name] is True, (name, report["results"][name])
    assert report["results"]["example"] is True  # the example backend ran and matched torch
    assert report["losses"]["hinge_rate"] == "snn-example-plugin"
    assert report["results"]["hinge_rate"] == pytest.approx(0.0)  # rate gap 0.8 > margin 0.5
    assert {"ottt", "sltt", "fptt"} <= set(report["learners"])
    assert set(report["learners"].values()) == {"snn-online"}
    assert report["results"]["ottt"] is True


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _by_plugin(failures: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for failure in failures:
        grouped.setdefault(failure["plugin"], []).append(failure)
    return grouped


@pytest.fixture(autouse=True)
def _example_installed() -> None:
    import importlib.metadata

    if not any(ep.name == "example" for ep in importlib.metadata.entry_points(group="snn")):
        pytest.skip("the example plugin (examples/snn-example-plugin) is not installed")
    if not any(ep.name == "online" for ep in importlib.metadata.entry_points(group="snn")):
        pytest.skip("snn-online is not installed")


# ---------------------------------------------------------------------------------------------
# fresh interpreters
# ---------------------------------------------------------------------------------------------


def test_broken_plugins_leave_import_and_real_plugins_working(tmp_path: Path) -> None:
    root = broken_distributions(tmp_path)
    report = run_probe(_env(root))
    real_plugins_work(report)
    failures = _by_plugin(report["failures"])
    # clasha always fails (it takes the in-tree "loop"); of the two fakes sharing a loss name the
    # one found first on sys.path keeps it and the other fails too
    assert {"brokenimport", "raiser", "clasha"} <= set(failures) <= {"brokenimport", "raiser", "clasha", "clashb"}
    (imported,) = failures["brokenimport"]
    assert imported["stage"] == "import" and MISSING_MODULE in imported["error"]
    assert imported["distribution"] == "snn-brokenimport"
    (raised,) = failures["raiser"]
    assert raised["stage"] == "hook" and "snn_register_backends" in raised["error"]
    assert "RuntimeError: fake accelerator driver not found" in raised["error"]
    assert report["losses"]["raiser_loss"] == "snn-raiser"  # its other hook still registered
    loop_clash = [f for f in failures["clasha"] if f["clash_name"] == "loop"]
    assert loop_clash and loop_clash[0]["clash_with"] == "strategies" and loop_clash[0]["stage"] == "clash"
    shared = [f for f in report["failures"] if f["clash_name"] == "shared_fake_loss"]
    assert len(shared) == 1 and {shared[0]["plugin"], shared[0]["clash_with"]} == {"clasha", "clashb"}


def test_doctor_json_reports_every_failure_with_cause_and_names(tmp_path: Path) -> None:
    root = broken_distributions(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "snn", "doctor", "--json"], env=_env(root), capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 1, result.stderr  # failures recorded -> exit status 1
    report = json.loads(result.stdout)
    messages = {f["plugin"]: [] for f in report["failures"]}
    for f in report["failures"]:
        messages[f["plugin"]].append(f)
    (imported,) = messages["brokenimport"]
    assert imported["stage"] == "import" and imported["version"] == "1.0"
    assert f"ModuleNotFoundError: No module named '{MISSING_MODULE}'" in imported["error"]
    assert "brokenimport" in imported["message"] and MISSING_MODULE in imported["message"]
    (raised,) = messages["raiser"]
    assert raised["stage"] == "hook" and "fake accelerator driver not found" in raised["message"]
    clashes = [f for f in report["failures"] if f["stage"] == "clash"]
    assert {(f["clash_name"], f["clash_with"]) for f in clashes if f["plugin"] == "clasha"} >= {("loop", "strategies")}
    shared = next(f for f in clashes if f["clash_name"] == "shared_fake_loss")
    assert {shared["plugin"], shared["clash_with"]} == {"clasha", "clashb"}
    assert shared["plugin"] in shared["message"] and shared["clash_with"] in shared["message"]
    rows = {p["name"]: p for p in report["plugins"]}
    for broken in ("brokenimport", "raiser", "clasha"):
        assert rows[broken]["error"], rows[broken]
    real_plugins = [("torch", "snn-core"), ("online", "snn-online"), ("example", "snn-example-plugin")]
    real_plugins += [("triton", "snn-triton")] if _installed("snn-triton") else []
    for real, dist in real_plugins:
        assert rows[real]["error"] is None and rows[real]["distribution"] == dist
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["example"]["available"] is True and backends["example"]["distribution"] == "snn-example-plugin"
    assert {"ottt", "sltt", "fptt"} <= {i["name"] for i in report["learners"]}

    # switched off, the broken plugins are not even imported: no failures, exit status 0
    quiet = subprocess.run(
        [sys.executable, "-m", "snn", "doctor", "--json"],
        env=_env(root, SNN_DISABLED_PLUGINS="brokenimport,raiser,clasha,clashb"),
        capture_output=True, text=True, timeout=180,
    )
    assert quiet.returncode == 0, quiet.stdout[-2000:]
    assert json.loads(quiet.stdout)["failures"] == []


def test_clash_with_real_sibling_names_is_refused_after_them(tmp_path: Path) -> None:
    """A plugin found after the siblings that reuses their names is the one refused."""
    write_distribution(tmp_path, "snn-impostor", "impostor", CLASH_SIBLINGS)
    report = run_probe(_env(), append=tmp_path)
    real_plugins_work(report)
    clashes = {(f["clash_name"], f["clash_with"]) for f in report["failures"] if f["plugin"] == "impostor"}
    assert {("hinge_rate", "example"), ("ottt", "online")} <= clashes
    if _installed("snn-triton"):
        assert ("triton", "triton") in clashes


def test_clash_with_real_sibling_names_is_refused_before_them(tmp_path: Path) -> None:
    """The same impostor placed *before* site-packages must not win either."""
    write_distribution(tmp_path, "snn-impostor", "impostor", CLASH_SIBLINGS)
    report = run_probe(_env(tmp_path))
    failed = {f["plugin"] for f in report["failures"]}
    assert failed == {"impostor"}, report["failures"]
    real_plugins_work(report)


def test_entry_point_named_like_a_sibling_does_not_silently_replace_it(tmp_path: Path) -> None:
    write_distribution(tmp_path, "snn-shadow", "online", SHADOW_ONLINE)
    report = run_probe(_env(tmp_path))
    assert {"ottt", "sltt", "fptt"} <= set(report["learners"]), report["learners"]
    assert any(
        f["clash_name"] == "online" and "snn-shadow" in (f["distribution"] or "") for f in report["failures"]
    ), report["failures"]


# ---------------------------------------------------------------------------------------------
# in process
# ---------------------------------------------------------------------------------------------


def test_in_process_rebuild_with_broken_plugins_keeps_siblings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from snn import neuron

    root = broken_distributions(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path, str(root)])
    importlib.invalidate_caches()
    plugins.reset()
    try:
        registry = plugins.get_registry()
        failed = {f.plugin for f in registry.failures}
        assert {"brokenimport", "raiser", "clasha"} <= failed <= {"brokenimport", "raiser", "clasha", "clashb"}
        assert registry.backend("example").provenance.distribution == "snn-example-plugin"
        assert registry.learner("ottt").provenance.distribution == "snn-online"
        x = torch.rand(4, 2, 3) * 2
        want = neuron.LIFNode(step_mode="m")(x)
        assert torch.equal(neuron.LIFNode(step_mode="m", backend="example")(x), want)
        with pytest.raises(Exception, match="brokenimport"):  # asking for a missing name cites the failures
            registry.strategy("brokenimport_strategy")
    finally:
        monkeypatch.undo()
        plugins.reset()
    assert not any(f.plugin == "brokenimport" for f in plugins.get_registry().failures)

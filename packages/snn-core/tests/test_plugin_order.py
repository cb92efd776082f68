"""Plugin order: in-tree, then siblings, then other distributions, by name; never by sys.path.

A *sibling* is a distribution that snn-core's metadata pins to snn-core's own version and that
pins snn-core back (snn.plugins). The rule is exercised with fake distributions and entry points
handed to the loader (as pluggy's own tests fake ``importlib.metadata``), in both orders in
which ``sys.path`` could list them, and checked against the installed metadata independently,
from snn-core's ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import snn
from snn import plugins
from snn.registry import LossRegistrar, Registry

CORE_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class FakeDistribution:
    def __init__(self, name: str, version: str, requires: list[str] | None = None) -> None:
        self.name = name
        self.version = version
        self.requires = requires


class FakeEntryPoint:
    def __init__(self, name: str, dist: FakeDistribution, plugin: object) -> None:
        self.name = name
        self.value = f"{name}:plugin"
        self.group = "snn"
        self.dist = dist
        self._plugin = plugin

    def load(self) -> object:
        return self._plugin


def loss_plugin(loss_name: str, tag: str) -> types.ModuleType:
    """A plugin module registering ``loss_name`` as a loss returning ``tag``'s length."""
    module = types.ModuleType(f"fake_{tag}")

    @snn.hookimpl
    def snn_register_losses(register: LossRegistrar) -> None:
        register(loss_name, lambda y_seq, target: y_seq.sum() * 0 + len(tag), description=tag)

    module.snn_register_losses = snn_register_losses  # type: ignore[attr-defined]  # a module built at run time
    return module


CORE = FakeDistribution("snn-core", "7.0.0", [
    "torch>=2.4", "pluggy>=1.3",
    'snn-zeta==7.0.0; extra == "zeta"',          # a sibling: pinned both ways
    'snn-oneway==7.0.0; extra == "oneway"',      # pinned by snn-core, but pins snn-core loosely
    'snn-oldpin==6.0.0; extra == "oldpin"',      # pinned to another version
    'snn-loose>=7.0.0; extra == "loose"',        # not pinned
])


@pytest.fixture
def fake_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEntryPoint]]:
    """Entry points the loader sees (fill the list), snn-core's metadata replaced by ``CORE``."""
    entry_points: list[FakeEntryPoint] = []
    real_distribution = importlib.metadata.distribution
    real_version = importlib.metadata.version

    def distribution(name: str) -> Any:
        return CORE if name == "snn-core" else real_distribution(name)

    def version(name: str) -> str:
        return CORE.version if name == "snn-core" else real_version(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: list(entry_points))
    plugins.reset()
    yield entry_points
    plugins.reset()


def build(entry_points: list[FakeEntryPoint], found: list[FakeEntryPoint]) -> Registry:
    entry_points[:] = found
    plugins.reset()
    return plugins.get_registry()


def test_sibling_distributions_come_from_snn_core_metadata_only(fake_world: list[FakeEntryPoint]) -> None:
    assert plugins.sibling_distributions() == {"snn-zeta", "snn-oneway"}


def test_a_sibling_wins_a_name_against_a_third_party_whatever_the_path_order(fake_world: list[FakeEntryPoint]) -> None:
    sibling = FakeEntryPoint("zeta", FakeDistribution("snn-zeta", "7.0.0", ["snn-core==7.0.0"]), loss_plugin("shared", "zeta"))
    # a third party that sorts first and pins snn-core exactly too: still not a sibling
    third = FakeEntryPoint("aaa", FakeDistribution("aaa-plugin", "1.0", ["snn-core==7.0.0"]), loss_plugin("shared", "aaa"))
    for found in itertools.permutations([sibling, third]):
        registry = build(fake_world, list(found))
        assert registry.loss("shared").provenance.distribution == "snn-zeta"
        (failure,) = registry.failures
        assert (failure.plugin, failure.distribution, failure.stage) == ("aaa", "aaa-plugin", "clash")
        assert (failure.clash_name, failure.clash_with) == ("shared", "zeta")


@pytest.mark.parametrize(
    ("dist", "why"),
    [
        (FakeDistribution("snn-oneway", "7.0.0", ["snn-core>=7.0.0"]), "does not pin snn-core back"),
        (FakeDistribution("snn-oldpin", "6.0.0", ["snn-core==7.0.0"]), "pinned by snn-core to another version"),
        (FakeDistribution("snn-loose", "7.0.0", ["snn-core==7.0.0"]), "not pinned by snn-core"),
        (FakeDistribution("snn-zeta", "7.0.0", ["snn-core==6.0.0"]), "pins another snn-core"),
        (FakeDistribution("snn-zeta", "7.0.0", None), "no requirements at all"),
    ],
)
def test_only_a_two_way_pin_at_the_same_version_makes_a_sibling(
    fake_world: list[FakeEntryPoint], dist: FakeDistribution, why: str
) -> None:
    """Each of these is ordered as a third party: a third party named earlier keeps the name."""
    candidate = FakeEntryPoint("cand", dist, loss_plugin("shared", "candidate"))
    earlier = FakeEntryPoint("early", FakeDistribution("aaa-plugin", "1.0", []), loss_plugin("shared", "early"))
    for found in itertools.permutations([candidate, earlier]):
        registry = build(fake_world, list(found))
        assert registry.loss("shared").provenance.plugin == "early", why
        assert [f.plugin for f in registry.failures] == ["cand"], why


def test_third_parties_are_ordered_by_distribution_then_entry_name(fake_world: list[FakeEntryPoint]) -> None:
    dist_b = FakeDistribution("snn-bravo", "1.0", [])
    found = [
        FakeEntryPoint("zulu", dist_b, loss_plugin("shared", "bravo-zulu")),
        FakeEntryPoint("alpha", dist_b, loss_plugin("shared", "bravo-alpha")),
        FakeEntryPoint("yankee", FakeDistribution("Snn_Charlie", "1.0", []), loss_plugin("shared", "charlie")),
    ]
    outcomes = set()
    for order in itertools.permutations(found):
        registry = build(fake_world, list(order))
        outcomes.add((registry.loss("shared").provenance.plugin, tuple(sorted(f.plugin for f in registry.failures))))
    assert outcomes == {("alpha", ("yankee", "zulu"))}


def test_entry_point_names_clash_the_same_way(fake_world: list[FakeEntryPoint]) -> None:
    """Two distributions with one entry name: the sibling's is loaded, the other recorded."""
    sibling = FakeEntryPoint("zeta", FakeDistribution("snn-zeta", "7.0.0", ["snn-core==7.0.0"]), loss_plugin("a", "zeta"))
    impostor = FakeEntryPoint("zeta", FakeDistribution("aaa-impostor", "9.9", []), loss_plugin("b", "impostor"))
    for found in itertools.permutations([sibling, impostor]):
        registry = build(fake_world, list(found))
        assert registry.plugins["zeta"].distribution == "snn-zeta"
        assert "a" in registry.losses and "b" not in registry.losses
        (failure,) = registry.failures
        assert (failure.distribution, failure.stage, failure.clash_with) == ("aaa-impostor", "clash", "zeta")
        assert "already taken by plugin 'zeta': entry-point name 'zeta' is already used by distribution snn-zeta" in failure.describe()


def test_in_tree_names_win_against_a_sibling(fake_world: list[FakeEntryPoint]) -> None:
    sibling = FakeEntryPoint("zeta", FakeDistribution("snn-zeta", "7.0.0", ["snn-core==7.0.0"]), loss_plugin("tet", "zeta"))
    registry = build(fake_world, [sibling])
    assert registry.loss("tet").provenance.plugin == "losses"
    assert [(f.plugin, f.clash_with) for f in registry.failures] == [("zeta", "losses")]


def test_without_snn_core_metadata_there_are_no_siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert plugins.sibling_distributions() == frozenset()


@pytest.mark.parametrize(
    ("requirement", "pin"),
    [
        ('snn-triton==0.1.0; extra == "triton"', ("snn-triton", "0.1.0")),
        ("Snn_Triton (==0.1.0)", ("snn-triton", "0.1.0")),
        ("snn.triton[cuda12] == 0.1.0 ; python_version >= '3.10'", ("snn-triton", "0.1.0")),
        ("snn-triton>=0.1.0", None),
        ("snn-triton==0.1.0,<1", None),
        ("snn-triton===0.1.0", None),
        ("snn-triton", None),
    ],
)
def test_requirement_pins_are_read_exactly(requirement: str, pin: tuple[str, str] | None) -> None:
    assert plugins._pins([requirement]) == (dict([pin]) if pin else {})


def test_the_installed_siblings_are_snn_cores_pinned_extras() -> None:
    """Against snn-core's pyproject.toml, read independently."""
    try:
        version = importlib.metadata.version("snn-core")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare source checkout
        pytest.skip("snn-core is not installed")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads(CORE_PYPROJECT.read_text(encoding="utf-8"))["project"]
    pinned = set()
    for requirements in project["optional-dependencies"].values():
        for requirement in requirements:
            name, _, rest = requirement.partition("==")
            if rest and rest.strip() == version:
                pinned.add(name.strip().lower())
    assert pinned >= {"snn-online", "snn-triton", "snn-cupy"}
    assert plugins.sibling_distributions() == pinned


def test_doctor_puts_an_entry_point_clash_on_the_refused_distribution(fake_world: list[FakeEntryPoint]) -> None:
    """The loaded plugin's row stays clean; the refused distribution gets a row of its own."""
    from snn import doctor

    sibling = FakeEntryPoint("zeta", FakeDistribution("snn-zeta", "7.0.0", ["snn-core==7.0.0"]), loss_plugin("a", "zeta"))
    impostor = FakeEntryPoint("zeta", FakeDistribution("aaa-impostor", "9.9", []), loss_plugin("b", "impostor"))
    reserved = FakeEntryPoint("torch", FakeDistribution("snn-reserved", "1.0", []), loss_plugin("c", "reserved"))
    build(fake_world, [impostor, reserved, sibling])
    rows = {(row["name"], row["distribution"]): row["error"] for row in doctor.collect()["plugins"]}
    assert rows[("zeta", "snn-zeta")] is None
    assert rows[("torch", "snn-core")] is None
    assert "aaa-impostor" in rows[("zeta", "aaa-impostor")] and "not loaded" in rows[("zeta", "aaa-impostor")]
    assert "reserved for an in-tree plugin" in rows[("torch", "snn-reserved")]


def test_an_entry_point_without_hook_implementations_is_a_recorded_failure(fake_world: list[FakeEntryPoint]) -> None:
    """An undecorated hook function is invisible to pluggy: the plugin would load as 'ok' and
    provide nothing, so it is recorded instead (and not listed as loaded)."""
    module = types.ModuleType("fake_undecorated")

    def snn_register_losses(register: LossRegistrar) -> None:  # no @snn.hookimpl
        register("never_seen", lambda y_seq, target: y_seq.sum())

    module.snn_register_losses = snn_register_losses  # type: ignore[attr-defined]  # a module built at run time
    registry = build(fake_world, [FakeEntryPoint("nodeco", FakeDistribution("snn-nodeco", "1.0", []), module)])
    assert "nodeco" not in registry.plugins and "never_seen" not in registry.losses
    (failure,) = registry.failures
    assert (failure.plugin, failure.stage) == ("nodeco", "validate")
    assert "implements no snn hook" in failure.error and "@snn.hookimpl" in failure.error


def test_one_module_under_two_entry_point_names_is_a_validation_failure(fake_world: list[FakeEntryPoint]) -> None:
    module = loss_plugin("shared_once", "twice")
    first = FakeEntryPoint("alpha", FakeDistribution("snn-twice", "1.0", []), module)
    second = FakeEntryPoint("beta", FakeDistribution("snn-twice", "1.0", []), module)
    registry = build(fake_world, [first, second])
    assert "shared_once" in registry.losses
    (failure,) = registry.failures
    assert (failure.plugin, failure.stage) == ("beta", "validate")
    assert failure.error == "the object 'beta:plugin' is already registered as plugin 'alpha'"

"""Every install command snn prints names something that exists, from an index and from a checkout.

The distributions are not on a public index yet, so the command for a checkout must work on
its own: ``pip install -e packages/<folder>[extras]`` run at the repository root. These tests
read the repository's ``pyproject.toml`` files (an independent source) and check each command
of :data:`snn.errors.FIRST_PARTY_PLUGINS` against them. ``tox -e pkg`` installs the wheels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from snn import errors

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"


def _project(folder: Path) -> dict[str, Any]:
    with open(folder / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]


def _projects() -> dict[str, dict[str, Any]]:
    return {project["name"]: project for project in map(_project, sorted(PACKAGES.iterdir()))}


def _requirement(command: str, *, editable: bool) -> tuple[str, set[str]]:
    """The target and extras of ``pip install [-e] "target[extras]"``."""
    pattern = r'pip install -e "?([^"\[\s]+)(?:\[([^\]]*)\])?"?' if editable else r'pip install "?([^"\[\s]+)(?:\[([^\]]*)\])?"?'
    match = re.fullmatch(pattern, command)
    assert match, f"not a single pip install command: {command!r}"
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1), extras


@pytest.mark.parametrize("name", sorted(errors.FIRST_PARTY_PLUGINS))
def test_the_checkout_command_installs_the_plugin_from_its_folder(name: str) -> None:
    plugin = errors.FIRST_PARTY_PLUGINS[name]
    folder, extras = _requirement(plugin.from_checkout, editable=True)
    project = _project(ROOT / folder)
    assert project["name"] == plugin.distribution
    assert extras <= set(project.get("optional-dependencies", {}))
    assert project["entry-points"]["snn"] == {name: f"{plugin.distribution.replace('-', '_')}.plugin"}
    # its dependencies on snn-core are satisfied by the checkout's snn-core (same version)
    core_version = _project(PACKAGES / "snn-core")["version"]
    assert f"snn-core=={core_version}" in project["dependencies"]


@pytest.mark.parametrize("name", sorted(errors.FIRST_PARTY_PLUGINS))
def test_the_index_command_brings_the_plugin(name: str) -> None:
    plugin = errors.FIRST_PARTY_PLUGINS[name]
    projects = _projects()
    target, extras = _requirement(plugin.from_index, editable=False)
    project = projects[target]
    optional = project.get("optional-dependencies", {})
    assert extras and extras <= set(optional)
    if target == plugin.distribution:
        return
    assert target == "snn-core"
    pins = {req for extra in extras for req in optional[extra]}
    assert f"{plugin.distribution}=={projects[plugin.distribution]['version']}" in pins


def test_every_name_a_plugin_registers_has_its_hint() -> None:
    for plugin in errors.FIRST_PARTY_PLUGINS.values():
        for name in (plugin.name, *plugin.provides):
            hint = errors.install_hint(name)
            assert hint == errors.INSTALL_HINTS[name] == plugin.hint()
            assert plugin.from_index in hint and plugin.from_checkout in hint
            assert "from a checkout of the snn repository" in hint
    assert errors.install_hint("no-such-plugin") is None


def test_versions_move_together_and_all_pulls_every_sibling() -> None:
    projects = _projects()
    versions = {name: project["version"] for name, project in projects.items()}
    assert set(versions) == {"snn-core", "snn-triton", "snn-cupy", "snn-cpp", "snn-online"}
    assert len(set(versions.values())) == 1, versions
    optional = projects["snn-core"]["optional-dependencies"]
    assert optional["all"] == ["snn-core[triton,cupy,online,cpp,demo,nir,plot]"]
    for extra, sibling in (("triton", "snn-triton"), ("cupy", "snn-cupy"), ("cpp", "snn-cpp"), ("online", "snn-online")):
        assert optional[extra] == [f"{sibling}=={versions[sibling]}"]
    assert set(optional["test"]) == {"pytest>=8", "hypothesis>=6.100"}


def test_error_messages_carry_both_commands() -> None:
    message = str(errors.BackendNotFoundError("triton", ["torch"]))
    assert 'pip install "snn-core[triton]"' in message and "pip install -e packages/snn-triton" in message
    message = str(errors.OnlineLearnerNotFoundError("hebb", []))
    assert 'pip install "snn-core[online]"' in message and "pip install -e packages/snn-online" in message


def _installed_plugin_hints() -> list[tuple[str, str]]:
    """``(printing distribution, hint)`` of the hints that installed first-party code prints."""
    hints = []
    from snn.train.extras import DEMO_INSTALL_HINT  # snn train without scikit-learn / matplotlib

    hints.append(("snn-core", DEMO_INSTALL_HINT))
    for distribution, module, attribute in (
        ("snn-triton", "snn_triton.runtime", "INSTALL_HINT"),  # snn-triton without triton
        ("snn-cupy", "snn_cupy.probe", "INSTALL_HINT"),  # snn-cupy without CuPy
    ):
        try:
            hints.append((distribution, getattr(__import__(module, fromlist=[attribute]), attribute)))
        except ImportError:
            continue
    return hints


@pytest.mark.parametrize(("printer", "hint"), _installed_plugin_hints())
def test_hints_of_installed_code_need_only_what_is_installed(printer: str, hint: str) -> None:
    """A hint printed by installed code names an extra of an installed distribution (the printer
    or snn-core, which it depends on) whose first-party requirements are installed too, so pip
    resolves it against the checkout's editable installs and fetches only third-party packages."""
    projects = _projects()
    target, extras = _requirement(hint, editable=False)
    assert target in (printer, "snn-core"), hint
    optional = projects[target].get("optional-dependencies", {})
    assert extras and extras <= set(optional), hint
    for extra in extras:
        for requirement in optional[extra]:
            name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]
            if name.startswith("snn-"):
                assert name in (printer, "snn-core"), f"{hint}: {requirement} is not installed when it is printed"

"""Meta-tests in the style of datasette's ``test_docs.py``: the docs and the tests keep up with the code.

- every hook specification of :mod:`snn.hookspecs` is documented in ``docs/plugins/hooks.rst``
  and exercised by a test named ``test_hook_<hook name>`` (in ``test_hooks.py``);
- every public name in the ``__all__`` of every public module of snn appears in the API docs:
  documented by an ``auto*`` or ``py:*`` directive, or listed in the ``:members:`` of an
  ``automodule``, under its own module or any module that exposes the same object;
- every ``# type: ignore[...]`` in the distributions' sources and in these tests says why.

The docs are read as reStructuredText source (no Sphinx build needed); the Sphinx build with
``-W`` checks the directives themselves.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import tokenize
import types
from pathlib import Path
from typing import Any

import pytest

import snn
from snn import hookspecs

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
TESTS = Path(__file__).resolve().parent

_DIRECTIVE = re.compile(
    r"^\s*\.\. (?:(?P<auto>auto)(?P<autokind>module|function|class|data|exception|attribute|method|decorator)"
    r"|py:(?P<pykind>module|currentmodule|function|class|data|exception|attribute|method|decorator)"
    r"|(?P<plain>currentmodule|module|include))::\s*(?P<target>\S+)"
)
_MEMBERS = re.compile(r"^\s+:members:\s*(?P<names>.*)$")
_GENERATED_SURROGATES = "_generated/surrogate_classes.rst"


def documented_names() -> set[str]:
    """Fully qualified names the rst sources of ``docs/`` document."""
    names: set[str] = set()
    for path in sorted(DOCS.rglob("*.rst")):
        if {"_build", "_generated"} & set(path.relative_to(DOCS).parts):
            continue
        current: str | None = None
        last_automodule: str | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _DIRECTIVE.match(line)
            if match:
                kind = match.group("autokind") or match.group("pykind") or match.group("plain")
                target = match.group("target").split("(")[0]
                last_automodule = None
                if kind == "include":
                    if target.endswith(_GENERATED_SURROGATES):
                        # docs/_ext/snn_docs.py writes one autoclass per class of SURROGATES
                        from snn.surrogate import SURROGATES

                        names.update(f"snn.surrogate.{name}" for name in SURROGATES)
                    continue
                if kind in ("module", "currentmodule"):
                    current = target
                    names.add(target)
                    if match.group("auto"):
                        last_automodule = target
                    continue
                names.add(target if target.startswith("snn") or current is None else f"{current}.{target}")
                continue
            members = _MEMBERS.match(line)
            if members and last_automodule is not None:
                listed = [n.strip() for n in members.group("names").split(",") if n.strip()]
                if not listed:
                    listed = list(getattr(importlib.import_module(last_automodule), "__all__", []))
                names.update(f"{last_automodule}.{n}" for n in listed)
    return names


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


_MISSING = object()


def _public_modules() -> list[str]:
    modules = ["snn"]
    for info in pkgutil.walk_packages(snn.__path__, "snn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules.append(info.name)
    return modules


def _static_all(module_name: str) -> list[str]:
    """``__all__`` read from the source (for a module whose imports are not installed here)."""
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def _named_by_object(obj: Any) -> bool:
    """Objects whose identity names them (not plain values such as strings or tuples)."""
    return isinstance(obj, (type, types.FunctionType, types.ModuleType)) or hasattr(obj, "__qualname__")


def undocumented_public_names() -> list[str]:
    documented = documented_names()
    by_object: dict[int, list[str]] = {}
    for name in documented:
        obj = _resolve(name)
        if obj is not _MISSING:
            by_object.setdefault(id(obj), []).append(name)
    missing = []
    for module_name in _public_modules():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional dependency of this module is not installed: exact names only
            missing += [f"{module_name}.{n}" for n in _static_all(module_name) if f"{module_name}.{n}" not in documented]
            continue
        for public in getattr(module, "__all__", []):
            full = f"{module_name}.{public}"
            if full in documented:
                continue
            obj = getattr(module, public)
            aliases = by_object.get(id(obj), [])
            if any(alias.rsplit(".", 1)[-1] == public or _named_by_object(obj) for alias in aliases):
                continue
            missing.append(full)
    return missing


# -- hooks --------------------------------------------------------------------------------------


def _hook_specs() -> list[str]:
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "snn_spec"))


def test_the_hook_list_is_the_five_hooks() -> None:
    assert _hook_specs() == sorted([
        "snn_register_neuron_models", "snn_register_backends", "snn_register_forward_strategies",
        "snn_register_losses", "snn_register_online_learners",
    ])


@pytest.mark.parametrize("hook", _hook_specs())
def test_every_hook_is_documented(hook: str) -> None:
    text = (DOCS / "plugins" / "hooks.rst").read_text(encoding="utf-8")
    assert f".. autofunction:: snn.hookspecs.{hook}" in text
    assert f"snn.hookspecs.{hook}" in documented_names()


@pytest.mark.parametrize("hook", _hook_specs())
def test_every_hook_has_a_test(hook: str) -> None:
    defined: set[str] = set()
    for path in TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert f"test_hook_{hook}" in defined, f"no test named test_hook_{hook} under {TESTS}"


# -- API docs -----------------------------------------------------------------------------------


def test_every_public_name_is_in_the_api_docs() -> None:
    missing = undocumented_public_names()
    assert not missing, "public names (in an __all__) missing from the docs:\n  " + "\n  ".join(missing)


def test_the_scanner_sees_directives_members_and_aliases() -> None:
    """The scanner itself, on what it must find (so the test above cannot pass vacuously)."""
    documented = documented_names()
    assert "snn.functional.reset_net" in documented  # autofunction after automodule snn.functional
    assert "snn.registry.BackendRegistrar" in documented  # :members: list of automodule
    assert "snn.surrogate.ATan" in documented  # the generated surrogate page
    assert "snn.mypy_plugin.plugin" in documented  # py:function after py:module
    assert "snn.hookimpl" in documented  # py:data
    assert "snn.does_not_exist" not in documented
    assert len(documented) > 300


# -- type: ignore comments ----------------------------------------------------------------------

_IGNORE = re.compile(r"^#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")
#: snn-triton and snn-cupy (and snn-cpp) are owned by other branches: add them when their comments say why.
_CHECKED_TREES = [
    ROOT / "packages" / "snn-core",
    ROOT / "packages" / "snn-online",
    ROOT / "packages" / "snn-triton",
    ROOT / "packages" / "snn-cupy",
    ROOT / "examples",
    ROOT / "tests",
    ROOT / "benchmarks",
]


def unexplained_type_ignores() -> list[str]:
    found = []
    for tree in _CHECKED_TREES:
        for path in sorted(tree.rglob("*.py")):
            if {"_build", ".venv", "build"} & set(path.parts):
                continue
            with path.open("rb") as source:
                comments = [t for t in tokenize.tokenize(source.readline) if t.type == tokenize.COMMENT]
            for token in comments:
                match = _IGNORE.match(token.string)
                if match is None:
                    continue
                if not match.group("codes") or not match.group("rest").strip().startswith("#"):
                    found.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string}")
    return found


def test_every_type_ignore_has_an_error_code_and_a_reason() -> None:
    found = unexplained_type_ignores()
    assert not found, "each '# type: ignore[code]' needs '  # reason' after it:\n  " + "\n  ".join(found)

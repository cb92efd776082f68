"""A mypy plugin that checks snn hook implementations against the hook specifications.

pluggy matches a hook implementation to its specification by name at run time, so a type
checker alone never compares the two: a function declared as
``def snn_register_backends(register: LossRegistrar) -> None`` type-checks, and its calls of
``register`` are then checked against the wrong registrar. This plugin closes that gap. Enable
it in the mypy configuration of a plugin distribution (snn-core must be installed where mypy
runs)::

    [tool.mypy]
    plugins = ["snn.mypy_plugin"]

For every function named ``snn_*`` decorated with ``@snn.hookimpl`` (any pluggy
``HookimplMarker`` applied directly, as ``@snn.hookimpl`` or ``snn.hookimpl(function)``), it
reports, with error code ``snn-hookimpl``:

- a name that is not a hook of :mod:`snn.hookspecs` (pluggy would drop the plugin);
- an argument the hook does not pass;
- an argument whose annotation does not accept what the hook passes (for example a
  :class:`~snn.registry.LossRegistrar` parameter on ``snn_register_backends``, which receives a
  :class:`~snn.registry.BackendRegistrar`);
- a return type other than ``None``.

With ``disallow_untyped_defs`` (snn's own configuration) every implementation must also
annotate its registrar, so each ``register(...)`` call is checked against the registrar's
signature. Implementations marked with options (``@snn.hookimpl(tryfirst=True)``) are not
seen by the plugin: the marker returns a plain decorator there.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ErrorCode
from mypy.messages import format_type
from mypy.nodes import (
    ARG_POS,
    FUNC_NO_INFO,
    Decorator,
    FuncDef,
    Import,
    ImportAll,
    ImportFrom,
    MypyFile,
    SymbolNode,
)
from mypy.plugin import MethodContext, Plugin
from mypy.subtypes import is_subtype
from mypy.types import CallableType, Type, get_proper_type

__all__ = ["HOOKIMPL_ERROR", "SNNHookPlugin", "plugin"]

#: The error code of this plugin's reports (silence one with ``# type: ignore[snn-hookimpl]``).
HOOKIMPL_ERROR = ErrorCode("snn-hookimpl", "Check snn hook implementations against snn.hookspecs", "General")

_HOOKSPECS = "snn.hookspecs"
_PREFIX = "snn_"


class SNNHookPlugin(Plugin):
    """Checks each ``@snn.hookimpl`` function against its spec in :mod:`snn.hookspecs`."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        if fullname.startswith("pluggy.") and fullname.endswith(".HookimplMarker.__call__"):
            return _check_hookimpl
        return None

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        # the specs must be part of the build wherever an implementation may be checked
        if file.fullname != _HOOKSPECS and _imports_snn(file):
            return [(10, _HOOKSPECS, -1)]
        return []


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls (``plugins = ["snn.mypy_plugin"]``)."""
    return SNNHookPlugin


def _imports_snn(file: MypyFile) -> bool:
    if file.fullname == "snn" or file.fullname.startswith("snn."):
        return True
    for node in file.imports:
        if isinstance(node, Import):
            names = [name for name, _ in node.ids]
        elif isinstance(node, (ImportFrom, ImportAll)):
            names = [node.id]
        else:  # pragma: no cover - mypy has no other import node
            continue
        if any(name == "snn" or name.startswith("snn.") for name in names):
            return True
    return False


def _spec_signature(ctx: MethodContext, name: str) -> tuple[CallableType | None, list[str]]:
    """The spec called ``name`` (or ``None``) and the names of every hook, from the build."""
    modules: dict[str, MypyFile] = getattr(ctx.api, "modules", {})
    hookspecs = modules.get(_HOOKSPECS)
    if hookspecs is None:
        return None, []
    hooks = sorted(n for n in hookspecs.names if n.startswith(_PREFIX))
    symbol = hookspecs.names.get(name)
    node: SymbolNode | None = symbol.node if symbol is not None else None
    if isinstance(node, Decorator):
        node = node.func
    spec = get_proper_type(node.type) if isinstance(node, FuncDef) and node.type is not None else None
    return (spec if isinstance(spec, CallableType) else None), hooks


def _check_hookimpl(ctx: MethodContext) -> Type:
    if not ctx.arg_types or len(ctx.arg_types[0]) != 1:
        return ctx.default_return_type  # the marker called with options only
    impl = get_proper_type(ctx.arg_types[0][0])
    if not isinstance(impl, CallableType) or not isinstance(impl.definition, FuncDef):
        return ctx.default_return_type
    definition = impl.definition
    name = definition.name
    if not name.startswith(_PREFIX):
        return ctx.default_return_type  # another project's hook (pytest_..., tox_...)
    spec, hooks = _spec_signature(ctx, name)
    if not hooks:
        return ctx.default_return_type  # snn.hookspecs is not part of this build
    where = ctx.context
    if spec is None:
        ctx.api.fail(
            f'"{name}" is not a hook of snn (pluggy drops a plugin implementing it); the hooks are: '
            + ", ".join(hooks),
            where, code=HOOKIMPL_ERROR,
        )
        return ctx.default_return_type
    is_method = definition.info is not FUNC_NO_INFO and not definition.is_static
    skip = 1 if is_method else 0
    spec_args = {n: t for n, t in zip(spec.arg_names, spec.arg_types) if n is not None}
    options = ctx.api.options
    for index, (arg_name, arg_type, kind) in enumerate(zip(impl.arg_names, impl.arg_types, impl.arg_kinds)):
        if index < skip or arg_name is None:
            continue
        if arg_name not in spec_args:
            ctx.api.fail(
                f'Hook implementation "{name}" takes argument "{arg_name}", which the hook does not pass '
                f"(it passes: {', '.join(spec_args)})",
                where, code=HOOKIMPL_ERROR,
            )
            continue
        if kind != ARG_POS:
            ctx.api.fail(
                f'Argument "{arg_name}" of hook implementation "{name}" must be a plain positional '
                "parameter (pluggy passes it by position)",
                where, code=HOOKIMPL_ERROR,
            )
        passed = spec_args[arg_name]
        if not is_subtype(passed, arg_type):
            ctx.api.fail(
                f'Argument "{arg_name}" of hook implementation "{name}" has type {format_type(arg_type, options)}, '
                f"but the hook passes {format_type(passed, options)}",
                where, code=HOOKIMPL_ERROR,
            )
    if not is_subtype(impl.ret_type, spec.ret_type):
        ctx.api.fail(
            f'Hook implementation "{name}" returns {format_type(impl.ret_type, options)}; '
            f"the hook expects {format_type(spec.ret_type, options)}",
            where, code=HOOKIMPL_ERROR,
        )
    return ctx.default_return_type

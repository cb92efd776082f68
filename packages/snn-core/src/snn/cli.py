"""The ``snn`` command line (also ``python -m snn``).

Each subcommand lives in its own module, imported only when that subcommand runs. A subcommand
module provides ``add_arguments(parser)`` (adds its options to an
:class:`argparse.ArgumentParser`) and ``run(args) -> int`` (the exit status). A subcommand is
offered only when its module is installed; a module that exists but fails to import is still
offered and reports its import error when run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

__all__ = ["SUBCOMMANDS", "Subcommand", "main"]


@dataclass(frozen=True)
class Subcommand:
    """A subcommand of ``snn``: its name, implementing module and one-line help."""

    name: str
    module: str
    help: str


#: The subcommands, in ``snn --help`` order.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("doctor", "snn.doctor", "show installed plugins, backends and plugin failures"),
    Subcommand(
        "train",
        "snn.train.command",
        "train a spiking network on scikit-learn's 8x8 digits (BPTT or an online learner)",
    ),
    Subcommand("evaluate", "snn.train.evaluate", "reload a run's model.pt and measure its test accuracy on the digits"),
    Subcommand("bench", "snn.bench", "time multi-step neurons on every installed backend, side by side"),
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _build_parser(
    available: Sequence[Subcommand],
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    import snn

    parser = argparse.ArgumentParser(prog="snn", description="Spiking neural networks for PyTorch: tools.")
    parser.add_argument("--version", action="version", version=f"snn {snn.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    parsers = {
        sub.name: subparsers.add_parser(sub.name, help=sub.help, description=sub.help) for sub in available
    }
    return parser, parsers


def _selected(argv: Sequence[str], names: set[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token if token in names else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``snn`` command.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status (0 on success).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    available = [sub for sub in SUBCOMMANDS if _installed(sub.module)]
    parser, parsers = _build_parser(available)

    chosen = _selected(args_list, set(parsers))
    module: ModuleType | None = None
    if chosen is not None:
        sub = next(s for s in available if s.name == chosen)
        try:
            module = importlib.import_module(sub.module)
        except Exception as exc:  # report the cause instead of a traceback
            print(f"snn {chosen}: cannot load {sub.module}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        module.add_arguments(parsers[chosen])

    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    assert module is not None  # argparse requires a known subcommand
    return int(module.run(args))

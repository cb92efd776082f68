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
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn

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


class _CommandParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line ``<prog>: error: <message>`` on stderr, as the
    subcommands report their own errors (the usage block stays on ``--help``), plus
    ``{"error": ..., "error_type": "UsageError"}`` on stdout when ``json_errors`` is set (the
    command line holds ``--json``)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        if self.json_errors:
            print(json.dumps({"error": message, "error_type": "UsageError"}), flush=True)
        raise SystemExit(2)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _build_parser(
    available: Sequence[Subcommand],
) -> tuple[_CommandParser, dict[str, _CommandParser]]:
    import snn

    parser = _CommandParser(prog="snn", description="Spiking neural networks for PyTorch: tools.")
    parser.add_argument("--version", action="version", version=f"snn {snn.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    parsers = {  # add_parser builds the parent's class (parser_class defaults to it)
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
        The exit status (0 on success; 130 after Ctrl-C, which prints one line instead of a
        traceback, also while a subcommand still imports torch).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args_list)
    except KeyboardInterrupt:
        if _other_rank():
            return 130  # rank 0 of a torchrun group reports the interruption once
        chosen = _selected(args_list, {sub.name for sub in SUBCOMMANDS})
        print(f"snn{'' if chosen is None else ' ' + chosen}: interrupted", file=sys.stderr, flush=True)
        if "--json" in args_list:
            print(json.dumps({"error": "interrupted", "error_type": "KeyboardInterrupt"}), flush=True)
        return 130


def _other_rank() -> bool:
    """Whether this process is a data-parallel worker other than rank 0 (read from the launcher's
    environment without importing torch: Ctrl-C may arrive while it imports)."""
    rank = os.environ.get("RANK", "").strip()
    world_size = os.environ.get("WORLD_SIZE", "").strip()
    return rank not in ("", "0") and world_size not in ("", "0", "1")


def _main(args_list: list[str]) -> int:
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

    for each in (parser, *parsers.values()):
        each.json_errors = "--json" in args_list
    try:
        args, unknown = parser.parse_known_args(args_list)
        if unknown:  # named by the subcommand they were given to, not by the top-level parser
            owner = parsers.get(chosen, parser) if chosen is not None else parser
            owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    assert module is not None  # argparse requires a known subcommand
    try:
        return int(module.run(args))
    except (MemoryError, RuntimeError) as exc:
        reason = _out_of_memory(exc)
        if reason is None:
            raise
        message = f"out of memory: {reason}; try smaller sizes"
        print(f"snn {chosen}: error: {message}", file=sys.stderr, flush=True)
        if "--json" in args_list:
            print(json.dumps({"error": message, "error_type": "OutOfMemoryError"}), flush=True)
        return 1


def _out_of_memory(exc: BaseException) -> str | None:
    """What an allocation failure says, in one line; ``None`` for any other error.

    PyTorch reports a failed CPU allocation as a :class:`RuntimeError` (``DefaultCPUAllocator:
    can't allocate memory: you tried to allocate ... bytes``) and a failed GPU allocation as
    ``torch.OutOfMemoryError`` (a :class:`RuntimeError`); Python raises :class:`MemoryError`.
    """
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    if isinstance(exc, MemoryError):
        return first_line or "MemoryError"
    if type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text:
        marker = "DefaultCPUAllocator: "  # after torch's "[enforce fail at alloc_cpu.cpp:N] err == 0. "
        return first_line[first_line.index(marker) + len(marker):] if marker in first_line else first_line
    return None

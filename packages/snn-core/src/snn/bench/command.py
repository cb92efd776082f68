"""The ``snn bench`` command: options, the text table and the JSON report.

:mod:`snn.cli` registers it through :func:`snn.bench.add_arguments` and :func:`snn.bench.run`;
``python -m snn.bench`` runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TextIO

import torch

from snn.bench.measure import DESCRIPTION, DTYPES, KINDS, REFERENCE_NAME, benchmark
from snn.bench.report import WIDE_SPREAD, BenchReport, BenchRow, format_ms

__all__ = ["format_table", "add_arguments", "run", "main"]

#: (field, title, alignment, format); the time columns print "median (fastest-slowest)".
_COLUMNS = (
    ("backend", "backend", "<", "{}"),
    ("kind", "kind", "<", "{}"),
    ("T", "T", ">", "{}"),
    ("N", "N", ">", "{}"),
    ("dtype", "dtype", "<", "{}"),
    ("forward_ms", "fwd ms (min-max)", ">", "{:.3f}"),
    ("backward_ms", "bwd ms (min-max)", ">", "{:.3f}"),
    ("inference_ms", "inf ms (min-max)", ">", "{:.3f}"),
    ("vs_torch", "x torch", ">", "{:.2f}"),
    ("vs_reference", "x ref", ">", "{:.2f}"),
    ("forward_gbps", "fwd GB/s", ">", "{:.2f}"),
    ("backward_gbps", "bwd GB/s", ">", "{:.2f}"),
    ("inference_gbps", "inf GB/s", ">", "{:.2f}"),
    ("matches_torch", "spikes=torch", ">", "{}"),
    ("copy_gbps", "copy GB/s", ">", "{:.2f}"),
    ("forward_of_copy", "fwd/copy", ">", "{:.0%}"),
    ("backward_of_copy", "bwd/copy", ">", "{:.0%}"),
    ("inference_of_copy", "inf/copy", ">", "{:.0%}"),
)


def _time_cell(row: BenchRow, phase: str) -> str:
    """``median (fastest-slowest)`` in ms, ``!`` appended when the runs spread widely."""
    median = getattr(row, f"{phase}_ms")
    low, high = getattr(row, f"{phase}_min_ms"), getattr(row, f"{phase}_max_ms")
    if low is None or high is None or low == high:
        return f"{median:.3f}"
    wide = "!" if phase in row.wide_phases() else ""
    return f"{median:.3f} ({format_ms(low)}-{format_ms(high)}){wide}"


def format_table(report: BenchReport) -> str:
    """The report as a plain-text table, followed by the skipped entries, a legend and warnings."""
    cells = [[title for _, title, _, _ in _COLUMNS]]
    for row in report.rows:
        values = asdict(row)
        values.update({f"{phase}_of_copy": row.of_copy(phase) for phase in ("forward", "backward", "inference")})
        cells.append([
            _time_cell(row, key.removesuffix("_ms")) if key in ("forward_ms", "backward_ms", "inference_ms")
            else "-" if values[key] is None else fmt.format(values[key])
            for key, _, _, fmt in _COLUMNS
        ])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(f"{cell:{_COLUMNS[i][2]}{widths[i]}}" for i, cell in enumerate(line)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    reference = f"{REFERENCE_NAME} {report.reference_version}" if report.reference_version else "none"
    lines.append("")
    lines.append(
        f"device {report.device} ({report.threads} CPU threads), torch {report.torch_version}, reference {reference}; median of "
        f"{report.repeats} runs, in parentheses the fastest and slowest (! marks a range above "
        f"{WIDE_SPREAD:.0%} of the median). x torch / x ref: training time (fwd + bwd) of torch / of the reference "
        "divided by this row's (above 1 = faster). GB/s: floor bytes (fwd with grad 12, bwd 12, "
        "inference 8 per neuron-step in float32) over time. spikes=torch: same inference spikes as the torch "
        "backend on the same input. copy GB/s: a plain copy_ of one [T, N] tensor into another (read + "
        "write), timed in the same rounds; fwd/bwd/inf/copy: each phase's GB/s as a fraction of it."
    )
    for skip in report.skipped:
        where = ", ".join(p for p in (skip.kind, skip.dtype) if p)
        lines.append(f"skipped {skip.backend}{f' ({where})' if where else ''}: {skip.reason}")
    if report.repeats == 1:
        lines.append("one run per measurement (--repeats 1): no spread to judge the timings by")
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _name_list(choices: Sequence[str] | None) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        if choices is not None:
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"expected names out of {', '.join(choices)}, got {', '.join(unknown)}")
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``snn bench`` to ``parser``.

    Args:
        parser: the (sub)command parser; :func:`run` reads the parsed namespace.
    """
    parser.add_argument("--backends", type=_name_list(None), default=None, metavar="A,B",
                        help="backends to time (default: every registered backend)")
    parser.add_argument("--models", "--kinds", dest="kinds", type=_name_list(None), default=list(KINDS), metavar="M,M",
                        help="registered neuron models, e.g. if,lif,plif,qif,eif,izhikevich,klif,cubalif "
                        "(default: if,lif,plif)")
    parser.add_argument("--baseline", default=None, metavar="PATH",
                        help="also time the torch backend of another snn checkout (e.g. a git worktree of main), "
                        "in a worker process taking turns with the others, as torch@baseline")
    parser.add_argument("--T", "-T", dest="T", type=_int_list, default=[16], metavar="T,T",
                        help="sequence lengths (default: 16)")
    parser.add_argument("--N", "-N", dest="N", type=_int_list, default=[4096, 16384], metavar="N,N",
                        help="neurons per step (default: 4096,16384)")
    parser.add_argument("--dtype", type=_name_list(tuple(DTYPES)), default=["float32"], metavar="D,D",
                        help="dtypes out of float32, float16, bfloat16, float64 (default: float32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median is shown (default: 5)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed runs first (default: 2; the CPU kernels' buffer cache fills over two runs)")
    parser.add_argument("--no-reference", action="store_true", help="do not time the reference library")
    parser.add_argument("--seed", type=int, default=0, help="seeds the inputs (default: 0)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch during the run, at most the cores; 0 keeps torch's setting (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object (the last stdout line)")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``snn bench`` with parsed arguments.

    Prints the table (or, with ``--json``, one JSON object as the last stdout line with keys
    ``device``, ``repeats``, ``threads``, ``torch_version``, ``reference_version``, ``rows``,
    ``skipped`` and ``warnings``; the warnings also go to ``stderr`` then).

    Args:
        args: the namespace parsed by a parser prepared with :func:`add_arguments`.
        stdout: where the table or JSON goes (default: ``sys.stdout``).
        stderr: where errors and progress go (default: ``sys.stderr``).

    Returns:
        0 on success, 2 for a bad setting (unknown backend, size, device), printed as
        ``snn bench: error: ...``.
    """
    from snn.errors import SNNError

    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    progress = stderr.isatty() and not args.json

    def on_row(row: BenchRow) -> None:
        if progress:
            print(f"  {row.backend} {row.kind} T={row.T} N={row.N} {row.dtype}: "
                  f"fwd {row.forward_ms:.3f} ms, bwd {row.backward_ms:.3f} ms", file=stderr, flush=True)

    logging.getLogger("snn").debug("snn bench: %s", vars(args))
    previous_threads = torch.get_num_threads()
    try:
        cores = os.cpu_count() or 1
        if not 0 <= args.threads <= cores:
            raise ValueError(
                f"threads: expected 0 (keep torch's setting) or at most the {cores} CPU cores here, got {args.threads}"
            )
        if not -(2**63) <= args.seed < 2**64:
            raise ValueError(f"--seed: expected an integer in [-2**63, 2**64) (torch's seed range), got {args.seed}")
        if args.threads:
            torch.set_num_threads(args.threads)
        report = benchmark(
            backends=args.backends, kinds=args.kinds, Ts=args.T, Ns=args.N, dtypes=args.dtype,
            device=args.device, repeats=args.repeats, warmup=args.warmup,
            reference=not args.no_reference, seed=args.seed, on_row=on_row, baseline=args.baseline,
        )
    except (SNNError, ValueError, TypeError) as exc:
        print(f"snn bench: error: {exc}", file=stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "error_type": type(exc).__name__}), file=stdout)
        return 2
    finally:
        torch.set_num_threads(previous_threads)
    if args.json:
        for warning in report.warnings:  # the table carries them; JSON readers see them here
            print(f"snn bench: warning: {warning}", file=stderr)
        print(json.dumps(_json_safe(report.to_json())), file=stdout, flush=True)
    else:
        print(format_table(report), file=stdout, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snn.bench [options]``: the same as ``snn bench [options]``."""
    parser = argparse.ArgumentParser(prog="snn bench", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))

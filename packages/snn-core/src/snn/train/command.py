"""``snn train``: train a spiking network on scikit-learn's digits from the command line.

The ``snn`` command (:mod:`snn.cli`) registers this as a subcommand with :func:`add_arguments`
and calls :func:`run`; ``python -m snn.train.command`` runs it on its own. Needs the demo extra:
``pip install "snn-core[demo]"`` (scikit-learn, matplotlib, tqdm).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from snn.train.data import ENCODINGS
from snn.train.loop import EpochRecord, TrainConfig
from snn.train.models import MODELS

__all__ = ["DESCRIPTION", "add_arguments", "run", "main"]

#: One line for ``snn --help``.
DESCRIPTION = "train a spiking network on scikit-learn's 8x8 digits (BPTT or an online learner)"

_DEFAULTS = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``snn train`` to ``parser``.

    Args:
        parser: the (sub)command parser; :func:`run` reads the parsed namespace.
    """
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", choices=MODELS, default=_DEFAULTS.model, help="network architecture (default: %(default)s)")
    model.add_argument("--hidden", type=int, default=_DEFAULTS.hidden, help="hidden width of the MLP (default: %(default)s)")
    model.add_argument("--T", "-T", dest="T", type=int, default=_DEFAULTS.T, help="time steps per image (default: %(default)s)")
    model.add_argument("--encoding", choices=ENCODINGS, default=_DEFAULTS.encoding,
                       help="input coding: the analogue image at every step, or Bernoulli/Poisson spikes (default: %(default)s)")
    model.add_argument("--limit", type=int, default=None, metavar="N",
                       help="use only N of the 1797 images (quick runs; default: all)")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="passes over the training set (default: %(default)s)")
    training.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="images per batch (default: %(default)s)")
    training.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="Adam learning rate (default: %(default)s)")
    training.add_argument("--loss", default=_DEFAULTS.loss,
                          help="a registered loss with signature sequence_classification, e.g. ce_rate, tet, mse_count (default: %(default)s)")
    training.add_argument("--learner", default=_DEFAULTS.learner,
                          help="bptt, or a registered online learner such as ottt, sltt, fptt (default: %(default)s)")
    training.add_argument("--backend", default=_DEFAULTS.backend,
                          help="neuron backend: a registered name (torch, triton, cupy, ...) or auto (default: %(default)s)")
    training.add_argument("--device", default=_DEFAULTS.device, help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    training.add_argument("--threads", type=int, default=_DEFAULTS.threads,
                          help="CPU threads for torch; 0 keeps torch's default (default: %(default)s, the fastest "
                               "for these small tensors, especially on a shared CPU)")
    training.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seeds weights, split, batch order and coding (default: %(default)s)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for metrics.json and the PNG plots (default: runs/train-<date>-<time>)")
    output.add_argument("--no-plots", action="store_true", help="write metrics.json only")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("--json", action="store_true",
                        help="print one JSON object as the last stdout line (epoch lines go to stderr)")


def _config(args: argparse.Namespace) -> TrainConfig:
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    return TrainConfig(
        model=args.model, T=args.T, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        backend=args.backend, loss=args.loss, learner=args.learner, encoding=args.encoding,
        device=args.device, seed=args.seed, limit=args.limit, hidden=args.hidden, progress=progress,
        threads=None if args.threads == 0 else args.threads,
    )


def _epoch_line(record: EpochRecord, config: TrainConfig) -> str:
    width = len(str(config.epochs))
    return (
        f"epoch {record.epoch:>{width}}/{config.epochs}  loss {record.train_loss:.4f}  "
        f"train {100 * record.train_accuracy:5.1f}%  test {100 * record.test_accuracy:5.1f}%  "
        f"({record.seconds:.1f} s)"
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _fail(args: argparse.Namespace, exc: BaseException, stdout: TextIO, stderr: TextIO) -> int:
    print(f"snn train: error: {exc}", file=stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": str(exc), "error_type": type(exc).__name__}), file=stdout)
    return 1 if isinstance(exc, (ImportError, FloatingPointError)) else 2


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``snn train`` with parsed arguments.

    Prints one summary line per epoch (to stdout, or to stderr with ``--json``), writes
    ``metrics.json`` and the PNG plots into ``--out``, and with ``--json`` prints one JSON
    object as the last stdout line (keys ``test_accuracy``, ``epochs``, ``seconds``,
    ``backend``, ``learner``, ``out``, ``files`` and the rest of the summary).

    Args:
        args: the namespace parsed by a parser prepared with :func:`add_arguments`.
        stdout: where results go (default: ``sys.stdout``).
        stderr: where errors, and with ``--json`` the epoch lines, go (default: ``sys.stderr``).

    Returns:
        The exit status: 0 on success, 2 for a bad setting (unknown loss, backend, learner,
        out-of-range value), 1 for a missing demo dependency or a diverged run. Errors are
        printed as ``snn train: error: ...`` (and as ``{"error": ...}`` with ``--json``).
    """
    from snn.errors import SNNError
    from snn.train.loop import train

    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    lines = stderr if args.json else stdout
    out_dir = args.out if args.out is not None else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    try:
        config = _config(args)
        result = train(config, on_epoch=lambda record, cfg: print(_epoch_line(record, cfg), file=lines, flush=True))
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = result.summary()
        files = ["metrics.json"]
        if not args.no_plots:
            from snn.train.plots import write_plots

            figures = write_plots(out_dir, [asdict(r) for r in result.history], result.sample_spikes,
                                  result.sample_label, result.firing_rates)
            files += list(figures.values())
        summary["out"] = str(out_dir)
        summary["files"] = files
        (out_dir / "metrics.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n", encoding="utf-8")
    except (SNNError, ValueError, TypeError, ImportError, FloatingPointError) as exc:
        return _fail(args, exc, stdout, stderr)
    print(
        f"test accuracy {100 * result.test_accuracy:.2f}% after {len(result.history)} epochs in "
        f"{result.seconds:.1f} s (model {config.model}, learner {config.learner}, backend {result.backend}, "
        f"loss {config.loss}, device {result.device})",
        file=lines,
    )
    print(f"wrote {', '.join(str(out_dir / f) for f in files)}", file=lines)
    if args.json:
        print(json.dumps(_json_safe(summary)), file=stdout, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snn.train.command [options]``: the same as ``snn train [options]``."""
    parser = argparse.ArgumentParser(prog="snn train", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

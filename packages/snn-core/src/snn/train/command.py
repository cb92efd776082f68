"""``snn train``: train a spiking network on scikit-learn's digits from the command line.

The ``snn`` command (:mod:`snn.cli`) registers this as a subcommand with :func:`add_arguments`
and calls :func:`run`; ``python -m snn.train.command`` runs it on its own. Needs the demo extra:
``pip install "snn-core[demo]"`` (scikit-learn, matplotlib, tqdm).

A run writes into its folder (``--out``): ``checkpoint.pt`` after every epoch, then
``model.pt``, ``metrics.json`` and the plots. ``--resume DIR`` continues a killed run from its
checkpoint; ``--nproc N`` trains with N data-parallel worker processes
(:mod:`snn.train.distributed`), and so does ``torchrun ... -m snn train`` on several machines.

Every setting is checked, and the output folder created, before any training; a bad one
exits with status 2 and one line ``snn train: error: ...`` that names the option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from snn.train.checkpoint import CHECKPOINT_FILE, MODEL_FILE
from snn.train.config import MIN_LIMIT, EpochRecord, TrainConfig, TrainResult
from snn.train.data import ENCODINGS, NUM_IMAGES
from snn.train.models import MODELS
from snn.train.resolve import path_argument, resolve_device

__all__ = ["DESCRIPTION", "RUN_OPTIONS", "add_arguments", "run", "main"]

#: One line for ``snn --help``.
DESCRIPTION = "train a spiking network on scikit-learn's 8x8 digits (BPTT or an online learner)"

#: The options that decide a run: ``TrainConfig`` field -> command-line option. They default
#: to ``None`` on the parser, so that ``--resume`` can tell the options given from the ones
#: left out (which the resumed run takes from its checkpoint).
RUN_OPTIONS: dict[str, str] = {
    "model": "--model", "hidden": "--hidden", "T": "--T", "encoding": "--encoding", "limit": "--limit",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "loss": "--loss", "learner": "--learner",
    "backend": "--backend", "device": "--device", "threads": "--threads", "seed": "--seed",
}

_DEFAULTS = TrainConfig()
_IMAGES = NUM_IMAGES


def _default(name: str) -> str:
    return f"default: {getattr(_DEFAULTS, name)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``snn train`` to ``parser``.

    Args:
        parser: the (sub)command parser; :func:`run` reads the parsed namespace.
    """
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", choices=MODELS, help=f"network architecture ({_default('model')})")
    model.add_argument("--hidden", type=int, help=f"hidden width of the MLP ({_default('hidden')})")
    model.add_argument("--T", "-T", dest="T", type=int, help=f"time steps per image ({_default('T')})")
    model.add_argument("--encoding", choices=ENCODINGS,
                       help=f"input coding: the analogue image at every step, or Bernoulli/Poisson spikes ({_default('encoding')})")
    model.add_argument("--limit", type=int, metavar="N",
                       help=f"use only N of the {_IMAGES} images, {MIN_LIMIT} <= N <= {_IMAGES} (quick runs; default: all)")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, help=f"passes over the training set ({_default('epochs')})")
    training.add_argument("--batch-size", type=int,
                          help=f"images per batch, shared by all processes with --nproc ({_default('batch_size')})")
    training.add_argument("--lr", type=float, help=f"Adam learning rate ({_default('lr')})")
    training.add_argument("--loss",
                          help=f"a registered loss with signature sequence_classification, e.g. ce_rate, tet, mse_count ({_default('loss')})")
    training.add_argument("--learner",
                          help=f"bptt (back-propagation through time), or an installed online learner such as ottt, sltt, fptt ({_default('learner')})")
    training.add_argument("--backend",
                          help=f"neuron backend: a registered name (torch, triton, cupy, ...) or auto ({_default('backend')})")
    training.add_argument("--device", help=f"auto, cpu, cuda or cuda:N ({_default('device')})")
    training.add_argument("--threads", type=int,
                          help=f"CPU threads for torch per process, >= 0; 0 keeps torch's default ({_default('threads')}, the fastest "
                               "for these small tensors, especially on a shared CPU)")
    training.add_argument("--seed", type=int, help=f"seeds weights, split, batch order and coding ({_default('seed')})")
    runs = parser.add_argument_group("processes and resuming")
    runs.add_argument("--nproc", type=int, default=1, metavar="N",
                      help="train with N data-parallel worker processes on this machine (torch.distributed: gloo on "
                           "CPU, NCCL on CUDA); leave it out under torchrun (default: %(default)s)")
    runs.add_argument("--resume", type=path_argument, metavar="RUN_DIR",
                      help="continue the run in RUN_DIR from its last checkpoint, with its settings (--epochs, "
                           "--threads and --nproc may change; other settings given must match the run's)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=path_argument, metavar="DIR",
                        help="folder for model.pt, checkpoint.pt, metrics.json and the PNG plots, checked and created "
                             "before training (default: runs/train-<date>-<time>)")
    output.add_argument("--export-nir", type=path_argument, metavar="PATH", default=None,
                        help="also write the trained network as a NIR graph (HDF5) to PATH, for neuromorphic "
                             "hardware and other libraries; needs pip install \"snn-core[nir]\"; checked before "
                             "training")
    output.add_argument("--no-plots", action="store_true", help="write no plots")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("--json", action="store_true",
                        help="print one JSON object as the last stdout line (epoch lines go to stderr)")


# -- turning options into a run ---------------------------------------------------------------


@dataclass
class _Plan:
    config: TrainConfig
    run_dir: Path
    checkpoint: dict[str, Any] | None = None
    created: list[Path] = field(default_factory=list)


def _cli_value(name: str, value: Any) -> Any:
    """A configuration value as the option spells it (``threads=None`` is ``--threads 0``)."""
    return 0 if name == "threads" and value is None else value


def _config_value(name: str, value: Any) -> Any:
    return None if name == "threads" and value == 0 else value


def _check_option_values(args: argparse.Namespace) -> None:
    if args.nproc < 1:
        raise ValueError(f"--nproc: expected an integer >= 1, got {args.nproc}")
    if args.limit is not None and not MIN_LIMIT <= args.limit <= _IMAGES:
        raise ValueError(
            f"--limit: expected an integer from {MIN_LIMIT} (two images per class) to {_IMAGES} (all of them), "
            f"got {args.limit}; leave it out to use all {_IMAGES} images"
        )
    if args.threads is not None and args.threads < 0:
        raise ValueError(f"--threads: expected an integer >= 0 (0 keeps torch's default), got {args.threads}")
    cores = os.cpu_count() or 1
    if args.threads is not None and args.threads > cores:
        raise ValueError(
            f"--threads: expected at most the {cores} CPU cores here (more threads only slow torch down), "
            f"got {args.threads}"
        )


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given on the command line, as configuration values."""
    return {name: _config_value(name, getattr(args, name)) for name in RUN_OPTIONS if getattr(args, name) is not None}


def _attributed_to_run(exc: ValueError, args: argparse.Namespace, config: TrainConfig) -> ValueError:
    """A resumed run's setting error about an option the user left out, naming the run it came
    from (``--device cuda`` of a run continued where torch sees no GPU); else ``exc`` itself."""
    if args.resume is None:
        return exc
    message, given = str(exc), _given(args)
    for name, option in RUN_OPTIONS.items():
        if message.startswith(f"{name}:") and name not in given:
            setting = f"{option} {_cli_value(name, getattr(config, name))}"
            return ValueError(
                f"{message} ({setting} is a setting of the run in {args.resume}: continue it where that "
                "works, or start a new run with --out)"
            )
    return exc


def _resumed_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    from snn.train.checkpoint import RunFileError, load_checkpoint

    run_dir: Path = args.resume
    if not run_dir.is_dir():
        raise ValueError(f"--resume {run_dir}: " + ("not a folder (a run folder of snn train)" if run_dir.exists() else "no such folder"))
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise ValueError(f"--resume {run_dir}: no {CHECKPOINT_FILE} in it (the run stopped before its first epoch ended)")
    if args.out is not None and args.out.resolve() != run_dir.resolve():
        raise ValueError(f"--out {args.out}: a resumed run writes into its own folder {run_dir}; leave --out out")
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    try:
        saved = TrainConfig.from_dict(checkpoint["config"])
    except (TypeError, ValueError) as exc:
        raise RunFileError(f"{run_dir / CHECKPOINT_FILE}: malformed checkpoint: {exc}") from exc
    for name, value in _given(args).items():
        if name in TrainConfig.RESUMABLE_CHANGES:
            setattr(saved, name, value)
        elif value != getattr(saved, name):
            option = RUN_OPTIONS[name]
            raise ValueError(
                f"{option} {getattr(args, name)} conflicts with the run in {run_dir}, which has "
                f"{option} {_cli_value(name, getattr(saved, name))}; leave {option} out to continue that run, "
                "or start a new one with --out"
            )
    if saved.epochs < checkpoint["epoch"]:
        raise ValueError(
            f"--epochs {saved.epochs}: the run in {run_dir} has already completed {checkpoint['epoch']} epochs"
        )
    return saved, checkpoint


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            pass


def _prepare_out_dir(path: Path) -> list[Path]:
    """Check ``--out`` and create it (with missing parents); returns the folders created."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path}: exists and is not a folder")
    if path.is_dir():
        held = [name for name in (CHECKPOINT_FILE, MODEL_FILE) if (path / name).exists()]
        if held:
            raise ValueError(
                f"--out {path}: already holds a training run ({held[0]}); continue it with --resume {path}, "
                "or choose another --out"
            )
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise ValueError(f"--out {path}: cannot write into the folder ({exc.strerror or exc})") from None
        return []
    missing: list[Path] = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is not a folder")
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except OSError as exc:
            _remove_created(created)
            raise ValueError(f"--out {path}: cannot create the folder {folder} ({exc.strerror or exc})") from None
        created.append(folder)
    return created


def _plan(args: argparse.Namespace, world_size: int, local_world_size: int | None = None) -> _Plan:
    """Check every option, create the output folder and check the settings; no training.

    ``local_world_size`` is the number of processes on this machine (default: all of them, as
    ``snn train --nproc`` starts them).
    """
    from snn.train.loop import check_settings

    _check_option_values(args)
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    if args.resume is not None:
        config, checkpoint = _resumed_config(args)
        config.progress = progress
        plan = _Plan(config, args.resume, checkpoint)
    else:
        values = {name: getattr(_DEFAULTS, name) for name in TrainConfig.SAVED_FIELDS} | _given(args)
        config = TrainConfig(**values, progress=progress)
        config.validate()
        run_dir = args.out if args.out is not None else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
        plan = _Plan(config, run_dir, None, _prepare_out_dir(run_dir))
    try:
        if getattr(args, "export_nir", None) is not None:
            _check_nir_export(args.export_nir, plan.config)
        if not args.no_plots:  # found before training, not after it (plots are written last)
            from snn.train.extras import import_demo_module

            import_demo_module("matplotlib.figure")
        try:
            check_settings(plan.config, world_size=world_size, local_world_size=local_world_size)
        except ValueError as exc:
            attributed = _attributed_to_run(exc, args, plan.config)
            if attributed is exc:
                raise
            raise attributed from exc
        except (MemoryError, RuntimeError) as exc:  # a resumed configuration too large for this machine
            from snn.train.checkpoint import too_large_error

            error = too_large_error(Path(args.resume) / CHECKPOINT_FILE, plan.config.hidden, exc) if args.resume else None
            if error is None:
                raise
            raise error from exc
    except BaseException:
        _remove_created(plan.created)
        raise
    return plan


def _nir_example_input(config: TrainConfig, model: Any) -> Any:
    """A zero input of one sample for ``model``: ``[T, 1, *]`` in step mode ``'m'``, else ``[1, *]``."""
    import torch

    from snn.base import StepModule
    from snn.train.runner import encode_batch

    x_seq = encode_batch(config, torch.zeros(1, 1, 8, 8), None)
    multi = any(isinstance(m, StepModule) and m.step_mode == "m" for m in model.modules())
    return x_seq if multi else x_seq[0]


def _check_nir_export(path: Path, config: TrainConfig) -> None:
    """``--export-nir PATH``: nir is installed, PATH can be written, and the network (untrained,
    same layers) converts; raises ``ValueError`` / ``ImportError`` naming the option."""
    from snn.errors import NIRConversionError
    from snn.nir import export_to_nir
    from snn.train.loop import resolve_learner
    from snn.train.runner import build_network

    if path.is_dir():
        raise ValueError(f"--export-nir {path}: is a folder; give a file name, e.g. {path / 'model.nir'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"--export-nir {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--export-nir {path}: cannot write into {parent}")
    model, _ = build_network(config, resolve_learner(config.learner))
    try:
        export_to_nir(model, _nir_example_input(config, model))
    except ImportError as exc:
        raise ImportError(f"--export-nir: {exc}") from exc
    except NIRConversionError as exc:
        raise ValueError(f"--export-nir {path}: this network has no NIR form: {exc}") from exc


# -- reporting ---------------------------------------------------------------------------------


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


def _cli_message(message: str) -> str:
    """A configuration error as the command line spells it (``batch_size:`` -> ``--batch-size:``)."""
    for name, option in RUN_OPTIONS.items():
        if message.startswith(f"{name}:"):
            return option + message[len(name):]
    return message


def _fail(
    args: argparse.Namespace, exc: BaseException, stdout: TextIO, stderr: TextIO, where: str = "", hint: str = ""
) -> int:
    from snn.train.distributed import ProcessGroupError, WorkerFailedError, launched_rank, report_failure

    message = _cli_message(str(exc)) + hint
    failed = (ImportError, FloatingPointError, WorkerFailedError, ProcessGroupError, OSError)
    code = 1 if isinstance(exc, failed) else 2
    try:
        worker = launched_rank() is not None
    except ValueError:  # the rendezvous variables are what failed
        worker = False
    if worker and report_failure(message):
        return code  # a worker of `snn train --nproc`: the launcher prints the error once, naming the rank
    print(f"snn train: error: {where}{message}", file=stderr, flush=True)
    if isinstance(exc, WorkerFailedError) and exc.cause_rank in exc.tracebacks:
        # the likeliest cause's alone: the others' usually say a peer vanished
        print(f"traceback of rank {exc.cause_rank}:\n{exc.tracebacks[exc.cause_rank].rstrip()}", file=stderr, flush=True)
    if getattr(args, "json", False):
        print(json.dumps({"error": f"{where}{message}", "error_type": type(exc).__name__}), file=stdout, flush=True)
    return code


def _errors() -> tuple[type[BaseException], ...]:
    from snn.errors import SNNError

    return (SNNError, ValueError, TypeError, ImportError, FloatingPointError, OSError)


def _write_outputs(args: argparse.Namespace, result: TrainResult, run_dir: Path) -> list[str]:
    from snn.train.checkpoint import atomic_write

    files = [MODEL_FILE, CHECKPOINT_FILE, "metrics.json"]
    if not args.no_plots:
        from snn.train.plots import write_plots

        figures = write_plots(run_dir, [r.metrics() for r in result.history], result.sample_spikes,
                              result.sample_label, result.firing_rates)
        files += list(figures.values())
    if getattr(args, "export_nir", None) is not None:
        from snn.nir import export_to_nir

        assert result.model is not None  # train() returns the network it trained
        model = result.model.cpu().eval()
        export_to_nir(model, _nir_example_input(result.config, model), save_path=args.export_nir)
        # the others are named inside the run folder; this one where it was written
        files.append(str(Path(args.export_nir).resolve()))
    metrics = result.metrics()
    metrics["files"] = files
    atomic_write(run_dir / "metrics.json", (json.dumps(_json_safe(metrics), indent=2) + "\n").encode("utf-8"))
    return files


def _report(args: argparse.Namespace, result: TrainResult, run_dir: Path, stdout: TextIO, lines: TextIO) -> None:
    files = _write_outputs(args, result, run_dir)
    config = result.config
    processes = f", {result.world_size} processes" if result.world_size > 1 else ""
    epochs = len(result.history)
    print(
        f"test accuracy {100 * result.test_accuracy:.2f}% after {epochs} epoch{'s' if epochs != 1 else ''} in "
        f"{result.seconds:.1f} s (model {config.model}, learner {config.learner}, backend {result.backend}, "
        f"loss {config.loss}, device {result.device}{processes})",
        file=lines, flush=True,
    )
    print(f"wrote {', '.join(str(run_dir / f) for f in files)}", file=lines, flush=True)
    if args.json:
        summary = result.summary()
        summary["out"] = str(run_dir)
        summary["files"] = files
        print(json.dumps(_json_safe(summary)), file=stdout, flush=True)


def _train_and_report(
    args: argparse.Namespace, plan: _Plan, stdout: TextIO, lines: TextIO, distributed: Any = None
) -> None:
    from snn.train.loop import train

    is_main = distributed is None or distributed.is_main
    if plan.checkpoint is not None and is_main:
        print(f"resuming {plan.run_dir} after epoch {plan.checkpoint['epoch']} of {plan.config.epochs}",
              file=lines, flush=True)
    on_epoch = (lambda record, cfg: print(_epoch_line(record, cfg), file=lines, flush=True)) if is_main else None
    result = train(plan.config, on_epoch=on_epoch, run_dir=plan.run_dir if is_main else None,
                   checkpoint=plan.checkpoint, distributed=distributed)
    if is_main:
        _report(args, result, plan.run_dir, stdout, lines)


# -- the three ways to run: one process, launcher, worker ----------------------------------


def _worker_main(args: argparse.Namespace) -> None:
    """Entry point of a worker process started by ``snn train --nproc N`` (pickled by reference)."""
    code = run(args)
    if code:
        raise SystemExit(code)


def _run_worker(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    import torch

    from snn.train import distributed as dist

    lines = stderr if args.json else stdout
    try:
        context = dist.init_worker()
    except (ValueError, dist.ProcessGroupError) as exc:
        return _fail(args, exc, stdout, stderr)
    try:
        payload: dict[str, Any] = {}
        if context.is_main:
            try:
                if args.nproc not in (1, context.world_size):
                    raise ValueError(
                        f"--nproc {args.nproc}: this process is one of {context.world_size} workers started by a "
                        "launcher (torchrun); leave --nproc out"
                    )
                plan = _plan(args, context.world_size, dist.local_world_size(context.world_size))
                payload = {"config": plan.config.to_dict(), "progress": plan.config.progress,
                           "run_dir": str(plan.run_dir), "checkpoint": plan.checkpoint}
            except _errors() as exc:
                payload = {"exit": _fail(args, exc, stdout, stderr)}
        payload = context.broadcast(payload)
        if "exit" in payload:
            return int(payload["exit"])
        config = TrainConfig.from_dict(payload["config"])
        config.progress = bool(payload["progress"]) and context.is_main
        # the device rank 0 checked, one GPU per process on CUDA (as a single process resolves it)
        device = torch.device("cpu")
        if resolve_device(config.device).type == "cuda":
            device = torch.device("cuda", context.local_rank)
            torch.cuda.set_device(device)
        plan = _Plan(config, Path(payload["run_dir"]), payload["checkpoint"])
        try:
            _train_and_report(args, plan, stdout, lines, context.on(device))
        except _errors() as exc:
            return _fail(args, exc, stdout, stderr, where=f"rank {context.rank}: ")
        except RuntimeError as exc:
            if not _peer_lost(exc):
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            lost = dist.ProcessGroupError(
                f"another process of the group failed or stopped ({first_line}); its error says why"
            )
            return _fail(args, lost, stdout, stderr, where=f"rank {context.rank}: ")
        return 0
    finally:
        dist.shutdown_worker()


def _peer_lost(exc: RuntimeError) -> bool:
    """Whether ``exc`` says a peer of the process group went away (the secondary failure of a
    data-parallel run whose first failure another rank reports)."""
    import torch.distributed

    network_error = getattr(torch.distributed, "DistNetworkError", ())
    text = str(exc)
    return isinstance(exc, network_error) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``snn train`` with parsed arguments.

    Checks every option and creates the output folder first. Then trains, printing one line
    per epoch (to stdout, or to stderr with ``--json``), writes ``checkpoint.pt`` after every
    epoch and ``model.pt``, ``metrics.json`` and the PNG plots at the end into the run folder,
    and with ``--json`` prints one JSON object as the last stdout line (``metrics.json``'s
    content plus ``seconds``, ``out`` and ``files``). With ``--nproc N`` above 1 it starts N
    worker processes, of which rank 0 prints and writes; started by a launcher (``RANK`` and
    ``WORLD_SIZE`` in the environment), it is one of those workers.

    Args:
        args: the namespace parsed by a parser prepared with :func:`add_arguments`.
        stdout: where results go (default: ``sys.stdout``).
        stderr: where errors, and with ``--json`` the epoch lines, go (default: ``sys.stderr``).

    Returns:
        The exit status: 0 on success, 2 for a bad setting (unknown loss, backend, learner,
        out-of-range value, unusable ``--out``, conflicting ``--resume``), 1 for a missing demo
        dependency, a diverged run or a failed worker process. Errors are printed as one line
        ``snn train: error: ...`` (and as ``{"error": ...}`` with ``--json``).
    """
    from snn.train import distributed as dist

    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        launched = dist.launched_rank()
    except ValueError as exc:
        return _fail(args, exc, stdout, stderr)
    if launched is not None:
        return _run_worker(args, stdout, stderr)
    lines = stderr if args.json else stdout
    try:
        plan = _plan(args, args.nproc)
    except _errors() as exc:
        return _fail(args, exc, stdout, stderr)
    try:
        if args.nproc == 1:
            _train_and_report(args, plan, stdout, lines)
        else:
            worker_args = argparse.Namespace(**vars(args))
            if args.resume is None:
                worker_args.out = plan.run_dir  # the folder checked and created here
            dist.launch(args.nproc, _worker_main, worker_args)
    except _errors() as exc:
        hint = ""
        if isinstance(exc, dist.WorkerFailedError) and (plan.run_dir / CHECKPOINT_FILE).exists():
            hint = f"; continue from the last checkpoint with: snn train --resume {plan.run_dir}"
        return _fail(args, exc, stdout, stderr, hint=hint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snn.train.command [options]``: the same as ``snn train [options]``."""
    parser = argparse.ArgumentParser(prog="snn train", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

"""The training loop of ``snn train``: BPTT or any registered online learner on the digits.

:func:`train` is the programmatic entry point (``snn train`` is a command around it): it
resolves the backend, loss and learner through the plugin registry (:mod:`snn.train.resolve`:
typed errors listing the known names when one is missing), builds the network, trains it for a number of epochs, and
returns a :class:`TrainResult` with the learning curves, firing rates and the spikes of one test
sample per layer. Given a run directory it writes a checkpoint after every epoch and the model
file at the end (:mod:`snn.train.checkpoint`), and it continues from a checkpoint exactly where
the run stopped. Given a :class:`~snn.train.distributed.DistributedContext` it runs as one
process of a data-parallel group.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn.train.config import EpochRecord, TrainConfig, TrainResult
from snn.train.data import DigitsSplit, batch_indices, load_digits_split
from snn.train.distributed import DataParallelUnsupportedError, DistributedContext
from snn.train.models import record_spikes
from snn.train.resolve import (
    SEQUENCE_CLASSIFICATION,
    LearnerNotFoundError,
    resolve_backend,
    resolve_device,
    resolve_learner,
    resolve_loss,
)
from snn.train.runner import Runner, encode_batch, evaluate_network, surrogate_name

__all__ = [
    "SEQUENCE_CLASSIFICATION",
    "LearnerNotFoundError",
    "resolve_loss",
    "resolve_backend",
    "resolve_learner",
    "resolve_device",
    "check_settings",
    "train",
]

@dataclass
class _Setup:
    device: torch.device
    data: DigitsSplit
    runner: Runner


def _check_data_parallel(config: TrainConfig, learner: Any, n_train: int, world_size: int) -> None:
    if world_size <= 1:
        return
    if learner is not None:
        from snn.plugins import get_registry

        if get_registry().learner(config.learner).metadata.get("data_parallel") is not True:
            raise DataParallelUnsupportedError(
                f"learner {config.learner!r} cannot train data-parallel ({world_size} processes): its plugin does "
                "not register it with data_parallel=True. Under DistributedDataParallel every call of the network "
                "must be followed by exactly one backward pass, and the learner's state must stay equal in every "
                "process; a learner that guarantees both declares it. Train it in one process"
            )
    batch = config.batch_size
    smallest = min(batch, n_train) if n_train % batch == 0 or batch >= n_train else n_train % batch
    if smallest < world_size:
        raise ValueError(
            f"batch_size: with {world_size} processes every batch needs at least {world_size} images (one per "
            f"process), but {n_train} training images in batches of {batch} leave a batch of {smallest}; "
            "choose another batch size or image limit"
        )


def _prepare(config: TrainConfig, device: torch.device, world_size: int) -> _Setup:
    loss_fn = resolve_loss(config.loss)
    learner = resolve_learner(config.learner)
    torch.manual_seed(config.seed)
    data = load_digits_split(config.seed, limit=config.limit).to(device)
    _check_data_parallel(config, learner, len(data.y_train), world_size)
    runner = Runner(
        config, device, loss_fn, learner,
        backend=lambda model, step_mode: resolve_backend(config.backend, device, step_mode, surrogate_name(model)),
    )
    return _Setup(device, data, runner)


def check_settings(config: TrainConfig, *, world_size: int = 1, local_world_size: int | None = None) -> None:
    """Everything :func:`train` checks before its first epoch, without training.

    Validates the fields, resolves the device, loss, learner and backend, loads the data and
    builds the network; ``snn train --nproc`` calls it before starting worker processes.

    Args:
        config: the settings.
        world_size: number of data-parallel processes that will train.
        local_world_size: how many of them run on this machine (one GPU each on CUDA; default
            ``world_size``).

    Raises:
        The errors of :func:`train`, and
        DataParallelUnsupportedError: ``world_size > 1`` with a learner that does not declare
            ``data_parallel=True``.
        ValueError: ``world_size > 1`` and a batch would hold fewer images than processes.
    """
    config.validate()
    device = resolve_device(config.device)
    if device.type == "cuda" and world_size > 1:
        if device.index is not None:
            raise ValueError(
                f"device: {config.device!r} names one GPU, but each of the {world_size} processes uses the GPU of "
                "its local rank; ask for 'cuda' or 'auto'"
            )
        local = world_size if local_world_size is None else local_world_size
        if torch.cuda.device_count() < local:
            on_machine = "" if local == world_size else f" on this machine (of {world_size} in all)"
            raise ValueError(
                f"device: {local} processes{on_machine} need {local} GPUs (one each), torch sees "
                f"{torch.cuda.device_count()}; use fewer processes or device 'cpu'"
            )
        device = torch.device("cuda", 0)
    with _threads(config.threads):
        _prepare(config, device, world_size)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``None``: unchanged), restored after."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord, TrainConfig], None] | None = None,
    run_dir: Path | str | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train a spiking network on the digits as ``config`` says.

    Args:
        config: the run's settings.
        on_epoch: called after each epoch with its record (``snn train`` prints a line).
        run_dir: a folder (created if needed) that receives ``checkpoint.pt`` after every epoch
            and ``model.pt`` at the end; ``None`` writes nothing. A folder that already holds a
            run is refused unless ``checkpoint`` continues it.
        checkpoint: a checkpoint (:func:`snn.train.checkpoint.load_checkpoint`) to continue
            from: weights, optimizer, learner state, random states and history are restored
            and training resumes with the next epoch, giving the same weights and metrics as a
            run that never stopped. ``config`` must equal the checkpoint's configuration except
            for ``epochs`` (at least the completed epochs) and ``threads``.
        distributed: this process's place in a data-parallel group (rank 0 evaluates and
            writes; the others only train); ``None`` for one process.

    Returns:
        The :class:`TrainResult` (the trained model included).

    Raises:
        ValueError: a setting is out of range, the device is not available, ``config``
            differs from the checkpoint's, or ``run_dir`` is empty, not a folder, or holds a run.
        snn.errors.RegistryEntryNotFoundError: unknown loss.
        snn.errors.BackendNotFoundError: unknown backend.
        snn.errors.BackendUnavailableError: the backend cannot run here.
        snn.errors.UnsupportedOperationError: the backend lacks what the network needs.
        LearnerNotFoundError: unknown learner.
        DataParallelUnsupportedError: several processes with a learner that does not allow it.
        snn.train.extras.DemoDependencyError: scikit-learn or tqdm is missing.
        FloatingPointError: the loss or the weights became NaN or infinite.
        TypeError: ``config`` is not a :class:`TrainConfig`, ``on_epoch`` not callable, or
            ``checkpoint`` not a checkpoint.
        OSError: ``run_dir`` cannot be created or written.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    config.validate()
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch: expected a callable or None, got {type(on_epoch).__name__}")
    if checkpoint is not None:
        if not isinstance(checkpoint, Mapping) or not {"config", "epoch"} <= set(checkpoint):
            raise TypeError("checkpoint: expected a checkpoint from snn.train.load_checkpoint (a mapping with its config)")
        _check_resumable(config, checkpoint)
    folder = None if run_dir is None else _run_folder(run_dir, resuming=checkpoint is not None)
    with _threads(config.threads):
        return _train(config, on_epoch, folder, checkpoint, distributed)


def _run_folder(run_dir: Path | str, resuming: bool) -> Path:
    """``run_dir`` as a path, refusing an empty one and (unless resuming) a folder that already
    holds a run, which a new run would overwrite."""
    from snn.train import checkpoint as files

    if not isinstance(run_dir, (str, os.PathLike)) or not str(run_dir).strip():
        raise ValueError(f"run_dir: expected a folder path, got {run_dir!r}")
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"run_dir: {str(folder)!r} is not a folder")
    held = [name for name in (files.CHECKPOINT_FILE, files.MODEL_FILE) if (folder / name).exists()]
    if held and not resuming:
        raise ValueError(
            f"run_dir: {str(folder)!r} already holds a training run ({', '.join(held)}); give its checkpoint "
            "to continue it, or another folder"
        )
    return folder


def _check_resumable(config: TrainConfig, checkpoint: Mapping[str, Any]) -> None:
    saved = checkpoint["config"]
    for name in TrainConfig.SAVED_FIELDS:
        if name not in TrainConfig.RESUMABLE_CHANGES and saved.get(name) != getattr(config, name):
            raise ValueError(
                f"{name}: the checkpoint's run has {name}={saved.get(name)!r}, got {getattr(config, name)!r}; "
                "a resumed run keeps its settings"
            )
    if config.epochs < checkpoint["epoch"]:
        raise ValueError(f"epochs: the checkpoint has completed {checkpoint['epoch']} epochs, got {config.epochs}")


def _history_of(checkpoint: Mapping[str, Any]) -> list[EpochRecord]:
    # load_checkpoint checked every entry's keys and values
    return [EpochRecord(**entry) for entry in checkpoint["history"]]


def _plain_data(value: Any) -> bool:
    if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain_data(v) for k, v in value.items())
    return False


def _train(
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord, TrainConfig], None] | None,
    run_dir: Path | None,
    checkpoint: Mapping[str, Any] | None,
    distributed: DistributedContext | None,
) -> TrainResult:
    from snn.train import checkpoint as files

    started = time.perf_counter()
    world_size = 1 if distributed is None else distributed.world_size
    is_main = distributed is None or distributed.is_main
    device = resolve_device(config.device) if distributed is None else distributed.device
    tqdm = None
    if config.progress and is_main:
        from snn.train.extras import import_demo_module

        tqdm = import_demo_module("tqdm").tqdm

    setup = _prepare(config, device, world_size)
    data, runner = setup.data, setup.runner
    if runner.learner is not None and run_dir is not None and not _plain_data(runner.state):
        raise TypeError(
            f"learner {config.learner!r}: its state (init_state) is not plain data (tensors, numbers, strings, "
            "lists, dicts), so a checkpoint cannot store it"
        )
    generators = {
        "order": torch.Generator().manual_seed(config.seed + 1),
        "coding": torch.Generator(device=device).manual_seed(config.seed + 2),
    }
    eval_seed = config.seed + 3
    history: list[EpochRecord] = []
    if checkpoint is not None:
        try:
            runner.restore(checkpoint["model"], checkpoint["optimizer"], checkpoint.get("learner_state"))
            files.restore_rng_states(checkpoint["rng"], generators)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # weights of another shape, an optimizer or random state of another layout ...
            where = run_dir / files.CHECKPOINT_FILE if run_dir is not None else "the checkpoint"
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            detail = f"{type(exc).__name__}: {' '.join(lines[:2])}" if lines else type(exc).__name__
            raise files.RunFileError(
                f"{where}: the checkpoint does not fit the run its configuration describes ({detail})"
            ) from exc
        history = _history_of(checkpoint)
    resumed_after = len(history)
    if distributed is not None:
        runner.distribute(distributed)
    if run_dir is not None and is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(run_dir)

    n_train, n_test = len(data.y_train), len(data.y_test)
    for epoch in range(resumed_after + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        loss_sum, right, seen, batches = 0.0, 0, 0, 0
        bar = None
        if tqdm is not None:
            bar = tqdm(total=n_train, desc=f"epoch {epoch}/{config.epochs}", unit="img", file=sys.stderr,
                       leave=False, dynamic_ncols=True)
        try:
            for idx in batch_indices(n_train, config.batch_size, generators["order"]):
                x_seq = encode_batch(config, data.x_train[idx], generators["coding"])
                y = data.y_train[idx]
                scale = 1.0
                if distributed is not None and world_size > 1:
                    start, stop = distributed.share(len(idx))
                    x_seq, y = x_seq[:, start:stop], y[start:stop]
                    scale = (stop - start) * world_size / len(idx)
                batch_loss, batch_right = runner.train_batch(x_seq, y, scale)
                if not math.isfinite(batch_loss):
                    raise FloatingPointError(f"the training loss became {batch_loss} at epoch {epoch}; try a smaller --lr")
                loss_sum += batch_loss / world_size
                right += batch_right
                seen += len(y)
                batches += 1
                if bar is not None:
                    bar.update(len(idx))
                    # this process's share (rank 0 with several processes), as a mean
                    bar.set_postfix(loss=f"{loss_sum * world_size / batches:.4f}", acc=f"{right / seen:.3f}")
        finally:
            if bar is not None:
                bar.close()
        if distributed is not None and world_size > 1:
            loss_sum, right_sum, seen_sum = distributed.all_reduce_sum([loss_sum, right, seen])
            right, seen = int(right_sum), int(seen_sum)
        test_accuracy = float("nan")
        if is_main:
            eval_generator = torch.Generator(device=device).manual_seed(eval_seed)
            test_right, _ = evaluate_network(runner.model, runner.step_mode, config, data, eval_generator)
            test_accuracy = test_right / max(n_test, 1)
        broken = [name for name, p in runner.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if broken:  # silent neurons can hide NaN weights from the loss
            raise FloatingPointError(
                f"the weights {', '.join(broken)} became NaN or infinite in epoch {epoch}; try a smaller --lr"
            )
        record = EpochRecord(epoch, loss_sum / max(batches, 1), right / max(seen, 1), test_accuracy,
                             time.perf_counter() - epoch_start)
        history.append(record)
        if run_dir is not None and is_main:
            files.atomic_save(_checkpoint(config, runner, history, generators, world_size, str(device)),
                              run_dir / files.CHECKPOINT_FILE)
        if on_epoch is not None:
            on_epoch(record, config)

    firing_rates: dict[str, float] = {}
    sample_spikes: dict[str, torch.Tensor] = {}
    if is_main:
        eval_generator = torch.Generator(device=device).manual_seed(eval_seed)
        _, firing_rates = evaluate_network(runner.model, runner.step_mode, config, data, eval_generator)
        sample = encode_batch(config, data.x_test[:1], torch.Generator(device=device).manual_seed(eval_seed))
        sample_spikes = {name: s[:, 0] for name, s in record_spikes(runner.model, sample, runner.step_mode).items()}
    result = TrainResult(
        config=config,
        backend=runner.backend,
        device=str(device),
        history=history,
        seconds=time.perf_counter() - started,
        n_train=n_train,
        n_test=n_test,
        firing_rates=firing_rates,
        sample_spikes=sample_spikes,
        sample_label=int(data.y_test[0]),
        model=runner.model,
        world_size=world_size,
        resumed_after=resumed_after,
        run_dir=run_dir,
    )
    if run_dir is not None and is_main:
        files.atomic_save(_model_file(result, runner.step_mode), run_dir / files.MODEL_FILE)
    return result


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}


def _checkpoint(
    config: TrainConfig,
    runner: Runner,
    history: list[EpochRecord],
    generators: Mapping[str, torch.Generator],
    world_size: int,
    device: str,
) -> dict[str, Any]:
    from snn import __version__
    from snn.train import checkpoint as files

    return {
        "format": files.CHECKPOINT_FORMAT,
        "format_version": files.FORMAT_VERSION,
        "config": config.to_dict(),
        "epoch": len(history),
        "history": [asdict(r) for r in history],
        "model": _cpu_state(runner.model),
        "optimizer": runner.optimizer.state_dict(),
        "learner_state": runner.state,
        "rng": files.capture_rng_states(generators),
        "backend": runner.backend,
        "device": device,
        "world_size": world_size,
        "snn_version": __version__,
        "torch_version": str(torch.__version__),
    }


def _model_file(result: TrainResult, step_mode: str) -> dict[str, Any]:
    from snn import __version__
    from snn.train import checkpoint as files

    assert result.model is not None
    return {
        "format": files.MODEL_FORMAT,
        "format_version": files.FORMAT_VERSION,
        "config": result.config.to_dict(),
        "step_mode": step_mode,
        "state_dict": _cpu_state(result.model),
        "metrics": {"test_accuracy": result.test_accuracy, "n_test": result.n_test, "epochs": len(result.history)},
        "backend": result.backend,
        "device": result.device,
        "snn_version": __version__,
        "torch_version": str(torch.__version__),
    }

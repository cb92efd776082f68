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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn.train.data import ENCODINGS, NUM_CLASSES, NUM_IMAGES, DigitsSplit, batch_indices, load_digits_split
from snn.train.distributed import DataParallelUnsupportedError, DistributedContext
from snn.train.models import MODELS, record_spikes
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
    "MIN_LIMIT",
    "MAX_LR",
    "MAX_THREADS",
    "TrainConfig",
    "EpochRecord",
    "TrainResult",
    "LearnerNotFoundError",
    "resolve_loss",
    "resolve_backend",
    "resolve_learner",
    "resolve_device",
    "check_settings",
    "train",
]

#: The smallest ``limit`` (two images per class, so that each class has a test image).
MIN_LIMIT = 2 * NUM_CLASSES
#: Largest learning rate: Adam's first step, ``lr / (1 - beta1)`` with ``beta1 = 0.9``, is
#: applied to float32 weights and must be a float32 number.
MAX_LR = float(torch.finfo(torch.float32).max) * (1 - 0.9)
#: The most intra-op threads a configuration may ask for (``snn train --threads`` allows this
#: machine's cores only).
MAX_THREADS = 1024


@dataclass
class TrainConfig:
    """Everything that decides a training run (defaults are those of ``snn train``).

    Attributes:
        model: ``"mlp"`` or ``"conv"``.
        T: time steps each image is presented for.
        epochs: passes over the training set.
        batch_size: images per optimizer step (BPTT) or per sequence (online learners); with
            several processes, the global batch they share.
        lr: Adam learning rate.
        backend: a registered backend name or ``"auto"``.
        loss: a registered loss with signature ``"sequence_classification"``.
        learner: ``"bptt"`` or a registered online learner.
        encoding: ``"direct"`` or ``"rate"``.
        device: ``"auto"`` (CUDA when available, else CPU) or a torch device string.
        seed: seeds the weights, the split, the batch order and rate coding.
        limit: use only this many images in total (at least :data:`MIN_LIMIT`, for quick
            runs); ``None`` uses all 1797.
        hidden: width of the MLP's hidden layer.
        threads: CPU threads torch may use during the run (restored afterwards); ``None``
            keeps torch's setting. One thread is the fastest choice for these small tensors,
            and by far the fastest on a CPU shared with other work.
        progress: show a tqdm progress bar per epoch on stderr (display only: not saved with
            the run).
    """

    model: str = "mlp"
    T: int = 8
    epochs: int = 15
    batch_size: int = 64
    lr: float = 5e-3
    backend: str = "torch"
    loss: str = "ce_rate"
    learner: str = "bptt"
    encoding: str = "direct"
    device: str = "auto"
    seed: int = 0
    limit: int | None = None
    hidden: int = 256
    threads: int | None = 1
    progress: bool = False

    #: The fields saved with a run (everything but the display setting ``progress``).
    SAVED_FIELDS = (
        "model", "T", "epochs", "batch_size", "lr", "backend", "loss", "learner", "encoding", "device",
        "seed", "limit", "hidden", "threads",
    )
    #: Saved fields a resumed run may change: more (or fewer) epochs, and the thread count.
    RESUMABLE_CHANGES = ("epochs", "threads")

    def validate(self) -> None:
        """Check the plain fields (names resolved through the registry are checked by :func:`train`).

        Raises:
            ValueError: a field is out of range, naming it, what was expected and what came.
            TypeError: a name field is not a string.
        """
        for name in ("model", "backend", "loss", "learner", "encoding", "device"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name}: expected a string, got {type(getattr(self, name)).__name__}")
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {self.model!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: expected one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("T", "epochs", "batch_size", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")
        if not -(2**63) <= self.seed <= 2**64 - 4:  # torch's seed range; generators use seed + 1 .. + 3
            raise ValueError(f"seed: expected an integer in [-2**63, 2**64 - 4] (torch's seed range), got {self.seed}")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a finite number > 0, got {self.lr!r}")
        if self.lr > MAX_LR:
            raise ValueError(
                f"lr: expected at most {MAX_LR:.4g} (Adam's first step, lr / (1 - 0.9), must be a float32 number), "
                f"got {self.lr!r}"
            )
        if self.limit is not None and (
            not isinstance(self.limit, int) or isinstance(self.limit, bool) or not MIN_LIMIT <= self.limit <= NUM_IMAGES
        ):
            raise ValueError(f"limit: expected None or an integer from {MIN_LIMIT} to the {NUM_IMAGES} images, got {self.limit!r}")
        if self.threads is not None:
            if not isinstance(self.threads, int) or isinstance(self.threads, bool):
                raise TypeError(f"threads: expected None or an integer, got {type(self.threads).__name__} {self.threads!r}")
            # a bound for files from other machines (more cores are fine); a huge count would
            # exhaust the process limits (OpenMP and OpenBLAS start a thread each), and snn
            # train's --threads keeps to this machine's cores
            if not 1 <= self.threads <= MAX_THREADS:
                raise ValueError(f"threads: expected None or an integer from 1 to {MAX_THREADS}, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        """The saved fields as plain data (what run files store)."""
        return {name: getattr(self, name) for name in self.SAVED_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The configuration :meth:`to_dict` saved, checked.

        Raises:
            ValueError: keys missing or unknown, or a value out of range.
            TypeError: a value of the wrong type.
        """
        missing = sorted(set(cls.SAVED_FIELDS) - set(data))
        unknown = sorted(set(data) - set(cls.SAVED_FIELDS))
        if missing or unknown:
            raise ValueError(f"config: expected the keys {list(cls.SAVED_FIELDS)}; missing {missing}, unknown {unknown}")
        config = cls(**{name: data[name] for name in cls.SAVED_FIELDS})
        config.validate()
        return config


@dataclass
class EpochRecord:
    """What one epoch achieved.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean loss over the epoch's batches.
        train_accuracy: share of training images classified right while training.
        test_accuracy: share of test images classified right after the epoch.
        seconds: wall time of the epoch (training and evaluation).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float

    def metrics(self) -> dict[str, Any]:
        """The record without its wall time (what the run computed)."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_accuracy": self.train_accuracy,
                "test_accuracy": self.test_accuracy}


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        config: the configuration that ran (``backend`` as asked).
        backend: the backend the neurons ran on (``"auto"`` resolved).
        device: the device used.
        history: one record per epoch (those of the checkpoint a run continued from included).
        seconds: wall time of this call, data loading included.
        n_train: number of training images.
        n_test: number of test images.
        firing_rates: ``layer name -> mean firing rate`` over the test set (spikes per neuron
            and step).
        sample_spikes: ``layer name -> [T, neurons]`` spikes of the first test image.
        sample_label: the label of that image.
        model: the trained network.
        world_size: number of data-parallel processes.
        resumed_after: epochs the checkpoint it continued from had completed (0: a new run).
        run_dir: where the checkpoint and ``model.pt`` were written, if anywhere.
    """

    config: TrainConfig
    backend: str
    device: str
    history: list[EpochRecord]
    seconds: float
    n_train: int
    n_test: int
    firing_rates: dict[str, float]
    sample_spikes: dict[str, torch.Tensor] = field(repr=False)
    sample_label: int = -1
    model: nn.Module | None = field(default=None, repr=False)
    world_size: int = 1
    resumed_after: int = 0
    run_dir: Path | None = None

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1].test_accuracy if self.history else float("nan")

    def metrics(self) -> dict[str, Any]:
        """What the run computed, without wall times: the content of ``metrics.json``.

        The same run (same settings, same machine) gives the same dictionary, whether it ran
        at once or was killed and resumed.
        """
        from snn import __version__

        return {
            "test_accuracy": self.test_accuracy,
            "train_accuracy": self.history[-1].train_accuracy if self.history else float("nan"),
            "epochs": len(self.history),
            "backend": self.backend,
            "learner": self.config.learner,
            "loss": self.config.loss,
            "model": self.config.model,
            "encoding": self.config.encoding,
            "T": self.config.T,
            "seed": self.config.seed,
            "device": self.device,
            "world_size": self.world_size,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "firing_rates": self.firing_rates,
            "history": [r.metrics() for r in self.history],
            "config": self.config.to_dict(),
            "snn_version": __version__,
            "torch_version": str(torch.__version__),
        }

    def summary(self) -> dict[str, Any]:
        """:meth:`metrics` plus wall times (what ``snn train --json`` prints): ``seconds`` of
        this call and each epoch's ``seconds`` in ``history``."""
        return {**self.metrics(), "seconds": round(self.seconds, 3), "history": [asdict(r) for r in self.history]}


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


def check_settings(config: TrainConfig, *, world_size: int = 1) -> None:
    """Everything :func:`train` checks before its first epoch, without training.

    Validates the fields, resolves the device, loss, learner and backend, loads the data and
    builds the network; ``snn train --nproc`` calls it before starting worker processes.

    Args:
        config: the settings.
        world_size: number of data-parallel processes that will train.

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
        if torch.cuda.device_count() < world_size:
            raise ValueError(
                f"device: {world_size} processes need {world_size} GPUs (one each), torch sees "
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
    names = {f.name for f in fields(EpochRecord)}
    history = []
    for entry in checkpoint["history"]:
        if set(entry) != names:
            raise ValueError(f"checkpoint: a history entry has the keys {sorted(entry)}, expected {sorted(names)}")
        history.append(EpochRecord(**entry))
    return history


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
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
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

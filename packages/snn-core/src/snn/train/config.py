"""What decides a training run and what it returns: :class:`TrainConfig`, :class:`EpochRecord`
and :class:`TrainResult`, with the bounds a configuration is checked against."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn.train.data import ENCODINGS, NUM_CLASSES, NUM_IMAGES
from snn.train.models import MODELS

__all__ = ["MIN_LIMIT", "MAX_LR", "MAX_THREADS", "TrainConfig", "EpochRecord", "TrainResult"]

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

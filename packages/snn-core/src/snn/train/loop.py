"""The training loop of ``snn train``: BPTT or any registered online learner on the digits.

:func:`train` is the programmatic entry point (``snn train`` is a thin command around it): it
resolves the backend, loss and learner through the plugin registry (typed errors listing the
known names when one is missing), builds the network, trains it for a number of epochs, and
returns a :class:`TrainResult` with the learning curves, firing rates and the spikes of one test
sample per layer.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from snn.train.data import ENCODINGS, DigitsSplit, batch_indices, encode, load_digits_split
from snn.train.models import MODELS, build_layers, default_neuron_factory, record_spikes, spiking_layers

__all__ = [
    "SEQUENCE_CLASSIFICATION",
    "TrainConfig",
    "EpochRecord",
    "TrainResult",
    "resolve_loss",
    "resolve_backend",
    "resolve_learner",
    "resolve_device",
    "train",
]

#: The loss signature ``snn train --loss`` accepts: ``loss(y_seq [T, N, C], target [N])``.
SEQUENCE_CLASSIFICATION = "sequence_classification"

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    """Everything that decides a training run (defaults are those of ``snn train``).

    Attributes:
        model: ``"mlp"`` or ``"conv"``.
        T: time steps each image is presented for.
        epochs: passes over the training set.
        batch_size: images per optimizer step (BPTT) or per sequence (online learners).
        lr: Adam learning rate.
        backend: a registered backend name or ``"auto"``.
        loss: a registered loss with signature ``"sequence_classification"``.
        learner: ``"bptt"`` or a registered online learner.
        encoding: ``"direct"`` or ``"rate"``.
        device: ``"auto"`` (CUDA when available, else CPU) or a torch device string.
        seed: seeds the weights, the split, the batch order and rate coding.
        limit: use only this many images in total (quick runs); ``None`` uses all 1797.
        hidden: width of the MLP's hidden layer.
        threads: CPU threads torch may use during the run (restored afterwards); ``None``
            keeps torch's setting. One thread is the fastest choice for these small tensors,
            and by far the fastest on a CPU shared with other work.
        progress: show a tqdm progress bar per epoch on stderr.
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

    def validate(self) -> None:
        """Check the plain fields (names resolved through the registry are checked by :func:`train`).

        Raises:
            ValueError: a field is out of range, naming it, what was expected and what came.
        """
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {self.model!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: expected one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("T", "epochs", "batch_size", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a finite number > 0, got {self.lr!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 20):
            raise ValueError(f"limit: expected None or an integer >= 20, got {self.limit!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads: expected None or an integer >= 1, got {self.threads!r}")


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


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        config: the configuration that ran (``backend`` as asked).
        backend: the backend the neurons ran on (``"auto"`` resolved).
        device: the device used.
        history: one record per epoch.
        seconds: total wall time, data loading included.
        n_train: number of training images.
        n_test: number of test images.
        firing_rates: ``layer name -> mean firing rate`` over the test set (spikes per neuron
            and step).
        sample_spikes: ``layer name -> [T, neurons]`` spikes of the first test image.
        sample_label: the label of that image.
        model: the trained network.
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

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1].test_accuracy if self.history else float("nan")

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (what ``snn train --json`` prints and metrics.json holds)."""
        from snn import __version__

        return {
            "test_accuracy": self.test_accuracy,
            "train_accuracy": self.history[-1].train_accuracy if self.history else float("nan"),
            "epochs": len(self.history),
            "seconds": round(self.seconds, 3),
            "backend": self.backend,
            "learner": self.config.learner,
            "loss": self.config.loss,
            "model": self.config.model,
            "encoding": self.config.encoding,
            "T": self.config.T,
            "seed": self.config.seed,
            "device": self.device,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "firing_rates": self.firing_rates,
            "history": [asdict(r) for r in self.history],
            "config": asdict(self.config),
            "snn_version": __version__,
            "torch_version": torch.__version__,
        }


def resolve_loss(name: str) -> LossFn:
    """The registered loss ``name``, checked to take ``(y_seq [T, N, C], target [N])``.

    Raises:
        snn.errors.RegistryEntryNotFoundError: no plugin registered ``name`` (lists the losses
            ``snn train`` accepts).
        ValueError: ``name`` is registered with another signature (lists the accepted ones).
    """
    from snn.errors import RegistryEntryNotFoundError
    from snn.plugins import get_registry

    registry = get_registry()
    accepted = sorted(n for n, item in registry.losses.items() if item.metadata.get("signature") == SEQUENCE_CLASSIFICATION)
    if name not in registry.losses:
        raise RegistryEntryNotFoundError(
            "loss", name, accepted,
            f"snn train accepts losses registered with signature={SEQUENCE_CLASSIFICATION!r}; "
            + (registry.failure_hint() or "plugins add more through the snn_register_losses hook"),
        )
    item = registry.loss(name)
    if name not in accepted:
        raise ValueError(
            f"loss: {name!r} is registered with signature {item.metadata.get('signature')!r}, but snn "
            f"train needs signature {SEQUENCE_CLASSIFICATION!r} (loss(y_seq [T, N, C], target [N])); "
            f"losses that have it: {', '.join(map(repr, accepted)) or '(none)'}"
        )
    return item.implementation


def resolve_backend(name: str, device: torch.device, step_mode: str, surrogate: str | None) -> str:
    """Check that backend ``name`` is installed and can run here; resolve ``"auto"``.

    Args:
        name: a backend name or ``"auto"``.
        device: where the network runs.
        step_mode: ``'m'`` or ``'s'`` (the kernel mode the LIF neurons need).
        surrogate: class name of the neurons' surrogate function.

    Returns:
        The backend name the neurons run on.

    Raises:
        snn.errors.BackendNotFoundError: unknown name (lists the installed ones).
        snn.errors.BackendUnavailableError: installed but its probe failed here.
        snn.errors.UnsupportedOperationError: it lacks the LIF kernel, the device or the dtype.
    """
    from snn.errors import UnsupportedOperationError
    from snn.plugins import get_registry

    registry = get_registry()
    mode = "multi_step" if step_mode == "m" else "single_step"
    if name == "auto":
        return registry.auto_backend("lif", mode, device.type, torch.float32, surrogate)
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a string, got {type(name).__name__}")
    info = registry.backend(name)
    info.raise_if_unavailable()
    if name == "torch":  # the reference backend runs every neuron in both step modes
        return name
    if not info.serves("lif", mode):
        raise UnsupportedOperationError(name, f"neuron kind 'lif' in mode {mode!r}", registry.backends_serving("lif", mode))
    registry.check_kernel_inputs(name, device.type, torch.float32, surrogate)
    return name


def resolve_learner(name: str) -> Any:
    """``None`` for ``"bptt"``, else the registered :class:`snn.learning.OnlineLearner`.

    Raises:
        snn.errors.OnlineLearnerNotFoundError: unknown name (lists ``bptt`` and the installed
            learners, and ``pip install "snn-core[online]"``).
    """
    if name == "bptt":
        return None
    from snn.errors import OnlineLearnerNotFoundError
    from snn.plugins import get_registry

    registry = get_registry()
    if not isinstance(name, str) or name not in registry.learners:
        raise OnlineLearnerNotFoundError(
            str(name), [*registry.learners, "bptt"],
            "'bptt' (back-propagation through time) is built in" + (f"; {registry.failure_hint()}" if registry.failures else ""),
        )
    return registry.learner(name).implementation


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else is parsed by torch.

    Raises:
        ValueError: not a device string, or CUDA asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but torch sees no CUDA device here")
    return device


def _surrogate_name(model: nn.Module) -> str | None:
    for _, neuron in spiking_layers(model):
        surrogate = getattr(neuron, "surrogate_function", None)
        return None if surrogate is None else type(surrogate).__name__
    return None


def _predict(y_seq: torch.Tensor, time_dim: int = 0) -> torch.Tensor:
    return y_seq.float().mean(time_dim).argmax(-1)


def _unwrap(y: Any) -> torch.Tensor:
    return y[0] if isinstance(y, (list, tuple)) else y


class _Runner:
    """Runs one network with one rule: a training step per batch, and evaluation."""

    def __init__(self, config: TrainConfig, device: torch.device, loss_fn: LossFn, learner: Any) -> None:
        from snn import functional

        self.config = config
        self.device = device
        self.loss_fn = loss_fn
        self.learner = learner
        self.step_mode = "m" if learner is None else "s"
        if learner is None:
            layers = build_layers(config.model, "m", default_neuron_factory("m"), hidden=config.hidden)
            self.model: nn.Module = nn.Sequential(*layers)
        else:
            layers = build_layers(
                config.model, "s", lambda: learner.make_neuron(tau=2.0), hidden=config.hidden, batch_norm=False
            )
            self.model = learner.wrap_model(layers)
        self.model.to(device)
        self.backend = resolve_backend(config.backend, device, self.step_mode, _surrogate_name(self.model))
        if self.step_mode == "m":
            functional.set_backend(self.model, self.backend)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.state = learner.init_state(self.model, self.optimizer) if learner is not None else None
        self._functional = functional

    def train_batch(self, x_seq: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """One update on a batch ``x_seq [T, N, *]``, ``y [N]``; returns (loss, right answers)."""
        self.model.train()
        self._functional.reset_net(self.model)
        if self.learner is None:
            y_seq = self.model(x_seq)
            loss = self.loss_fn(y_seq, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return float(loss.detach()), int((_predict(y_seq.detach()) == y).sum())
        T = x_seq.shape[0]
        time_dim = self.learner.time_dim
        loss_fn = self.loss_fn

        def f_loss_t(y_t: Any, target_t: torch.Tensor) -> torch.Tensor:
            return loss_fn(_unwrap(y_t).unsqueeze(0), target_t) / T

        if time_dim == 0:
            x_in, target_seq = x_seq, y.unsqueeze(0).expand(T, -1)
        else:
            x_in, target_seq = x_seq.transpose(0, 1), y.unsqueeze(1).expand(-1, T)
        loss, y_out = self.learner.train_sequence(self.model, self.optimizer, x_in, target_seq, f_loss_t, state=self.state)
        self._functional.reset_net(self.model)
        right = int((_predict(y_out, time_dim) == y).sum()) if y_out is not None else 0
        return float(loss), right

    @torch.no_grad()
    def outputs(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Eval-mode outputs ``[T, N, C]`` of a sequence."""
        self.model.eval()
        self._functional.reset_net(self.model)
        if self.step_mode == "m":
            y_seq = self.model(x_seq)
        else:
            y_seq = torch.stack([_unwrap(self.model(x_t)) for x_t in x_seq])
        self._functional.reset_net(self.model)
        return y_seq


def _encode_batch(
    config: TrainConfig, x: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    x_seq = encode(x, config.T, config.encoding, generator)
    if config.model == "mlp":
        x_seq = x_seq.flatten(2)
    return x_seq


def _evaluate(runner: _Runner, config: TrainConfig, data: DigitsSplit, generator: torch.Generator | None) -> tuple[float, dict[str, float]]:
    right, total = 0, 0
    spike_sums: dict[str, float] = {}
    spike_counts: dict[str, int] = {}
    hooks = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            spikes = _unwrap(output)
            spike_sums[name] = spike_sums.get(name, 0.0) + float(spikes.float().sum())
            spike_counts[name] = spike_counts.get(name, 0) + spikes.numel()

        return hook

    for name, module in spiking_layers(runner.model):
        hooks.append(module.register_forward_hook(hook_for(name)))
    try:
        for idx in batch_indices(len(data.y_test), 512, shuffle=False):
            x_seq = _encode_batch(config, data.x_test[idx], generator)
            y_seq = runner.outputs(x_seq)
            right += int((_predict(y_seq) == data.y_test[idx]).sum())
            total += len(idx)
    finally:
        for handle in hooks:
            handle.remove()
    rates = {name: spike_sums[name] / max(spike_counts[name], 1) for name in spike_sums}
    return right / max(total, 1), rates


def train(
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord, TrainConfig], None] | None = None,
) -> TrainResult:
    """Train a spiking network on the digits as ``config`` says.

    Args:
        config: the run's settings.
        on_epoch: called after each epoch with its record (``snn train`` prints a line).

    Returns:
        The :class:`TrainResult` (the trained model included).

    Raises:
        ValueError: a setting is out of range or the device is not available.
        snn.errors.RegistryEntryNotFoundError: unknown loss.
        snn.errors.BackendNotFoundError: unknown backend.
        snn.errors.BackendUnavailableError: the backend cannot run here.
        snn.errors.UnsupportedOperationError: the backend lacks what the network needs.
        snn.errors.OnlineLearnerNotFoundError: unknown learner.
        snn.train.extras.DemoDependencyError: scikit-learn or tqdm is missing.
    """
    config.validate()
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config: TrainConfig, on_epoch: Callable[[EpochRecord, TrainConfig], None] | None) -> TrainResult:
    started = time.perf_counter()
    device = resolve_device(config.device)
    loss_fn = resolve_loss(config.loss)
    learner = resolve_learner(config.learner)
    tqdm = None
    if config.progress:
        from snn.train.extras import import_demo_module

        tqdm = import_demo_module("tqdm").tqdm

    torch.manual_seed(config.seed)
    data = load_digits_split(config.seed, limit=config.limit).to(device)
    runner = _Runner(config, device, loss_fn, learner)
    order_generator = torch.Generator().manual_seed(config.seed + 1)
    code_generator = torch.Generator(device=device).manual_seed(config.seed + 2)
    eval_seed = config.seed + 3

    history: list[EpochRecord] = []
    n_train = len(data.y_train)
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        loss_sum, right, seen, batches = 0.0, 0, 0, 0
        bar = None
        if tqdm is not None:
            bar = tqdm(
                total=n_train, desc=f"epoch {epoch}/{config.epochs}", unit="img",
                file=sys.stderr, leave=False, dynamic_ncols=True,
            )
        try:
            for idx in batch_indices(n_train, config.batch_size, order_generator):
                x_seq = _encode_batch(config, data.x_train[idx], code_generator)
                y = data.y_train[idx]
                batch_loss, batch_right = runner.train_batch(x_seq, y)
                if not math.isfinite(batch_loss):
                    raise FloatingPointError(f"the training loss became {batch_loss} at epoch {epoch}; try a smaller --lr")
                loss_sum += batch_loss
                right += batch_right
                seen += len(idx)
                batches += 1
                if bar is not None:
                    bar.update(len(idx))
                    bar.set_postfix(loss=f"{loss_sum / batches:.4f}", acc=f"{right / seen:.3f}")
        finally:
            if bar is not None:
                bar.close()
        eval_generator = torch.Generator(device=device).manual_seed(eval_seed)
        test_accuracy, _ = _evaluate(runner, config, data, eval_generator)
        record = EpochRecord(epoch, loss_sum / max(batches, 1), right / max(seen, 1), test_accuracy, time.perf_counter() - epoch_start)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record, config)

    eval_generator = torch.Generator(device=device).manual_seed(eval_seed)
    _, firing_rates = _evaluate(runner, config, data, eval_generator)
    sample = _encode_batch(config, data.x_test[:1], torch.Generator(device=device).manual_seed(eval_seed))
    sample_spikes = {name: s[:, 0] for name, s in record_spikes(runner.model, sample, runner.step_mode).items()}
    return TrainResult(
        config=config,
        backend=runner.backend,
        device=str(device),
        history=history,
        seconds=time.perf_counter() - started,
        n_train=n_train,
        n_test=len(data.y_test),
        firing_rates=firing_rates,
        sample_spikes=sample_spikes,
        sample_label=int(data.y_test[0]),
        model=runner.model,
    )

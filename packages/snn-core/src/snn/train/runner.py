"""One network under one learning rule: how ``snn train`` builds, steps and evaluates it.

:func:`build_network` makes the network a configuration describes (``snn train`` and
:func:`snn.train.load_model` build it the same way), :class:`Runner` takes one training step
per batch (BPTT, or an online learner's :meth:`~snn.learning.OnlineLearner.train_sequence`),
optionally as one process of a data-parallel group, and :func:`evaluate_network` measures the
test accuracy and firing rates exactly as the training loop reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from snn.train.data import DigitsSplit, batch_indices, encode
from snn.train.models import build_layers, default_neuron_factory, spiking_layers

if TYPE_CHECKING:
    from snn.train.config import TrainConfig
    from snn.train.distributed import DistributedContext

__all__ = [
    "EVAL_BATCH",
    "LossFn",
    "Runner",
    "build_network",
    "check_state_fits",
    "encode_batch",
    "network_outputs",
    "evaluate_network",
    "predict",
    "surrogate_name",
]

#: Images per evaluation batch (evaluation results depend on it only through float rounding).
EVAL_BATCH = 512

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build_network(config: TrainConfig, learner: Any) -> tuple[nn.Module, str]:
    """The untrained network of ``config`` on the CPU, and its step mode.

    Args:
        config: the run's settings (``model`` and ``hidden`` are read).
        learner: ``None`` for BPTT, else the :class:`~snn.learning.OnlineLearner` whose
            neurons (``make_neuron``) and container (``wrap_model``) are used.

    Returns:
        ``(model, step_mode)``: BPTT gets an ``nn.Sequential`` in multi-step mode (``'m'``,
        inputs ``[T, N, *]``), an online learner its own single-step network (``'s'``,
        batch norm left out).
    """
    if learner is None:
        layers = build_layers(config.model, "m", default_neuron_factory("m"), hidden=config.hidden)
        return nn.Sequential(*layers), "m"
    layers = build_layers(config.model, "s", lambda: learner.make_neuron(tau=2.0), hidden=config.hidden, batch_norm=False)
    return learner.wrap_model(layers), "s"


def encode_batch(config: TrainConfig, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Images ``[N, 1, 8, 8]`` presented for ``config.T`` steps: ``[T, N, 1, 8, 8]``, or
    ``[T, N, 64]`` for the MLP."""
    x_seq = encode(x, config.T, config.encoding, generator)
    if config.model == "mlp":
        x_seq = x_seq.flatten(2)
    return x_seq


def _unwrap(y: Any) -> torch.Tensor:
    # Online-learning neurons return [spike, trace] while training.
    return y[0] if isinstance(y, (list, tuple)) else y


def predict(y_seq: torch.Tensor, time_dim: int = 0) -> torch.Tensor:
    """Class of each sample: the output neuron with the highest firing rate over time."""
    return y_seq.float().mean(time_dim).argmax(-1)


@torch.no_grad()
def network_outputs(model: nn.Module, x_seq: torch.Tensor, step_mode: str) -> torch.Tensor:
    """Eval-mode outputs ``[T, N, C]`` of a sequence ``x_seq [T, N, *]``.

    The network is reset before and after, so the call leaves no neuron state behind.
    """
    from snn import functional

    model.eval()
    functional.reset_net(model)
    if step_mode == "m":
        y_seq = model(x_seq)
    else:
        y_seq = torch.stack([_unwrap(model(x_t)) for x_t in x_seq])
    functional.reset_net(model)
    return y_seq


def evaluate_network(
    model: nn.Module, step_mode: str, config: TrainConfig, data: DigitsSplit, generator: torch.Generator | None
) -> tuple[int, dict[str, float]]:
    """Right answers on the test set and the mean firing rate of every neuron layer.

    Args:
        model: the network (left in eval mode).
        step_mode: its step mode.
        config: the run's settings (``T``, ``encoding``, ``model``).
        data: the split whose test set is used, in order, in batches of :data:`EVAL_BATCH`.
        generator: random source of rate coding (seeded by the caller for reproducible figures).

    Returns:
        ``(right, rates)``: the number of test images classified right, and
        ``layer name -> spikes per neuron and step`` over the test set.
    """
    right = 0
    spike_sums: dict[str, float] = {}
    spike_counts: dict[str, int] = {}
    hooks = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            spikes = _unwrap(output)
            spike_sums[name] = spike_sums.get(name, 0.0) + float(spikes.float().sum())
            spike_counts[name] = spike_counts.get(name, 0) + spikes.numel()

        return hook

    for name, module in spiking_layers(model):
        hooks.append(module.register_forward_hook(hook_for(name)))
    try:
        for idx in batch_indices(len(data.y_test), EVAL_BATCH, shuffle=False):
            y_seq = network_outputs(model, encode_batch(config, data.x_test[idx], generator), step_mode)
            right += int((predict(y_seq) == data.y_test[idx]).sum())
    finally:
        for handle in hooks:
            handle.remove()
    rates = {name: spike_sums[name] / max(spike_counts[name], 1) for name in spike_sums}
    return right, rates


def surrogate_name(model: nn.Module) -> str | None:
    """Class name of the surrogate function of ``model``'s first neuron layer (``None`` if none)."""
    for _, neuron in spiking_layers(model):
        surrogate = getattr(neuron, "surrogate_function", None)
        return None if surrogate is None else type(surrogate).__name__
    return None


class Runner:
    """Trains one network with one rule: a training step per batch.

    In a data-parallel group (``distributed`` with more than one process) the network is
    wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`; every call of the wrapper
    is followed by one backward pass, whose gradients DDP averages over the processes.

    Attributes:
        model: the network itself (what is saved, evaluated and reset).
        network: what is called to train: ``model``, or its DDP wrapper.
        step_mode: ``'m'`` (BPTT) or ``'s'`` (online learner).
        backend: the backend the neurons run on.
        optimizer: Adam over ``model``'s parameters.
        state: the learner's state across batches (:meth:`~snn.learning.OnlineLearner.init_state`).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        loss_fn: LossFn,
        learner: Any,
        backend: Callable[[nn.Module, str], str],
    ) -> None:
        """Build the network, resolve its backend and make the optimizer.

        Args:
            config: the run's settings.
            device: where the network runs.
            loss_fn: ``loss(y_seq [T, N, C], target [N])``, a mean over the batch.
            learner: ``None`` for BPTT, else an online learner.
            backend: ``backend(model, step_mode) -> name``, resolves and checks the backend.
        """
        from snn import functional

        self.config = config
        self.device = device
        self.loss_fn = loss_fn
        self.learner = learner
        model, self.step_mode = build_network(config, learner)
        self.model: nn.Module = model.to(device)
        self.backend = backend(self.model, self.step_mode)
        if self.step_mode == "m":
            functional.set_backend(self.model, self.backend)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.state = learner.init_state(self.model, self.optimizer) if learner is not None else None
        self.network: nn.Module = self.model
        self._functional = functional

    def restore(self, model_state: Mapping[str, Any], optimizer_state: Mapping[str, Any], learner_state: Any) -> None:
        """Load saved weights, optimizer state and learner state (call before :meth:`distribute`).

        Raises:
            ValueError: weights or optimizer moments of another name, shape or dtype (torch
                would convert a dtype silently, and meet a moment's shape only at the next
                step), optimizer settings other than the run's, or a learner state of
                another layout than ``init_state``'s.
        """
        check_state_fits(self.model, model_state, "model")
        _check_optimizer_state(self.optimizer, optimizer_state)
        if self.learner is not None:
            # the learner's state as init_state makes it (FPTT's running average: one tensor
            # per parameter), which the learner reads only at its next step
            _check_same_layout(learner_state, self.state, "learner_state")
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(dict(optimizer_state))
        if self.learner is not None:
            self.state = _to_device(learner_state, self.device)

    def distribute(self, context: DistributedContext) -> None:
        """Wrap the network in DDP for a group of more than one process."""
        if context.world_size > 1:
            self.network = context.wrap(self.model)

    def train_batch(self, x_seq: torch.Tensor, y: torch.Tensor, loss_scale: float = 1.0) -> tuple[float, int]:
        """One update on a batch ``x_seq [T, N, *]``, ``y [N]``.

        Args:
            x_seq: the encoded batch (this process's share of it).
            y: its labels.
            loss_scale: multiplies the loss before the backward pass. A process holding ``n``
                of a global batch of ``B`` images among ``W`` processes uses ``n * W / B``, so
                that DDP's average of the processes' gradients is the gradient of the mean
                loss over the global batch; ``1.0`` (one process) leaves the loss untouched.

        Returns:
            ``(loss, right)``: the scaled loss (its mean over processes is the global batch's
            loss) and the number of right answers.
        """
        self.model.train()
        self._functional.reset_net(self.model)
        if self.learner is None:
            y_seq = self.network(x_seq)
            loss = self.loss_fn(y_seq, y)
            if loss_scale != 1.0:
                loss = loss * loss_scale
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return float(loss.detach()), int((predict(y_seq.detach()) == y).sum())
        T = x_seq.shape[0]
        time_dim = self.learner.time_dim
        loss_fn = self.loss_fn

        def f_loss_t(y_t: Any, target_t: torch.Tensor) -> torch.Tensor:
            loss_t = loss_fn(_unwrap(y_t).unsqueeze(0), target_t) / T
            return loss_t * loss_scale if loss_scale != 1.0 else loss_t

        if time_dim == 0:
            x_in, target_seq = x_seq, y.unsqueeze(0).expand(T, -1)
        else:
            x_in, target_seq = x_seq.transpose(0, 1), y.unsqueeze(1).expand(-1, T)
        loss, y_out = self.learner.train_sequence(self.network, self.optimizer, x_in, target_seq, f_loss_t, state=self.state)
        self._functional.reset_net(self.model)
        right = int((predict(y_out, time_dim) == y).sum()) if y_out is not None else 0
        return float(loss), right


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def check_state_fits(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Raise ``ValueError`` unless ``state`` has exactly ``module``'s state-dict entries, each a
    tensor of the same shape and dtype (``load_state_dict`` would convert another dtype,
    integer weights included, without a word), with finite parameters (the training loop
    stops before it would write a NaN or infinite parameter, so such a file did not come from a
    run; buffers are not checked, as the loop does not check them)."""
    expected = module.state_dict()
    parameters = {name for name, _ in module.named_parameters()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{what}: missing entries {missing}, unexpected entries {unexpected}")
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            shown = f"{got.dtype} {list(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"{what}: {name}: expected {want.dtype} {list(want.shape)}, found {shown}")
        if name in parameters and got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"{what}: {name}: holds NaN or infinite values")


def _same_setting(saved: Any, current: Any) -> bool:
    """Whether a saved optimizer hyper-parameter equals the run's (numbers by value, bool as bool)."""
    if isinstance(current, bool) or current is None or isinstance(current, str):
        return type(saved) is type(current) and saved == current
    if isinstance(current, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and saved == current
    if isinstance(current, (tuple, list)):
        return (
            isinstance(saved, (tuple, list)) and len(saved) == len(current)
            and all(_same_setting(a, b) for a, b in zip(saved, current))
        )
    if isinstance(current, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == current.shape and bool((saved == current).all())
    return bool(saved == current)


#: The moments Adam keeps per parameter (``max_exp_avg_sq`` too with ``amsgrad``).
_ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def _check_optimizer_state(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``saved`` is a state of ``optimizer`` as the run built it.

    Every hyper-parameter of ``param_groups`` both have must equal the run's (the checkpoint's
    configuration made them: a different ``lr`` would silently override it), and every
    parameter's moments must be floating tensors of its shape, with Adam's all present (the
    optimizer would load anything and fail inside its next step).
    """
    current = optimizer.state_dict()
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise ValueError(
            f"optimizer: 'param_groups' should be a list of {len(current['param_groups'])} group(s), found {groups!r:.80}"
        )
    for g, (group, want) in enumerate(zip(groups, current["param_groups"])):
        if not isinstance(group, Mapping):
            raise ValueError(f"optimizer: param_groups[{g}] should be a dict, found {type(group).__name__}")
        for key, value in want.items():
            if key in group and not _same_setting(group[key], value):
                raise ValueError(
                    f"optimizer: param_groups[{g}][{key!r}]: expected the run's {value!r}, found {group[key]!r:.80}"
                )
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    amsgrad = [bool(group.get("amsgrad", False)) for group in optimizer.param_groups for _ in group["params"]]
    state = saved.get("state", {})
    if not isinstance(state, Mapping):
        raise ValueError(f"optimizer: 'state' should map parameter indices to their moments, found {type(state).__name__}")
    for index, moments in state.items():
        if not isinstance(index, int) or not 0 <= index < len(parameters) or not isinstance(moments, Mapping):
            raise ValueError(f"optimizer: state of parameter {index!r}: expected one of {len(parameters)} parameters' moments")
        parameter = parameters[index]
        if isinstance(optimizer, torch.optim.Adam):
            needed = (*_ADAM_MOMENTS, "step") + (("max_exp_avg_sq",) if amsgrad[index] else ())
            missing = [key for key in needed if key not in moments]
            if missing:
                raise ValueError(f"optimizer: state of parameter {index} lacks {missing}")
        for key, value in moments.items():
            if key == "step":
                number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
                if not isinstance(number, (int, float)) or isinstance(number, bool) or not number >= 0:
                    raise ValueError(f"optimizer: step of parameter {index}: expected a count >= 0, found {value!r:.80}")
            elif not isinstance(value, torch.Tensor) or value.shape != parameter.shape or not value.is_floating_point():
                found = f"{value.dtype} {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"optimizer: {key} of parameter {index}: expected a floating tensor {list(parameter.shape)}, found {found}"
                )
            elif bool(torch.isnan(value).any()):  # an infinite moment can come from a run (Adam's v overflowing)
                raise ValueError(f"optimizer: {key} of parameter {index}: holds NaN values")


def _check_same_layout(saved: Any, template: Any, where: str) -> None:
    """Raise ``ValueError`` unless ``saved`` has ``template``'s layout: the same container types,
    lengths and keys, tensors of the same shape and dtype, numbers for numbers."""
    if isinstance(template, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.shape != template.shape or saved.dtype != template.dtype:
            found = f"{saved.dtype} {list(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise ValueError(f"{where}: expected {template.dtype} {list(template.shape)}, found {found}")
    elif isinstance(template, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(template):
            raise ValueError(f"{where}: expected a sequence of {len(template)}, found {type(saved).__name__}")
        for i, (a, b) in enumerate(zip(saved, template)):
            _check_same_layout(a, b, f"{where}[{i}]")
    elif isinstance(template, Mapping):
        if not isinstance(saved, Mapping) or set(saved) != set(template):
            raise ValueError(f"{where}: expected the keys {sorted(map(str, template))}")
        for key in template:
            _check_same_layout(saved[key], template[key], f"{where}[{key!r}]")
    elif isinstance(template, (int, float)) and not isinstance(template, bool):
        if not isinstance(saved, (int, float)) or isinstance(saved, bool):
            raise ValueError(f"{where}: expected a number, found {type(saved).__name__}")
    elif type(saved) is not type(template):
        raise ValueError(f"{where}: expected {type(template).__name__}, found {type(saved).__name__}")

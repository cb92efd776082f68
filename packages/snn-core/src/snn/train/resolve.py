"""The names ``snn train`` resolves: loss, backend and learner through the plugin registry, the
device, and the paths its options name.

Each resolver returns what the training loop needs or raises a typed error that lists the names
that would have worked (:mod:`snn.errors`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from snn.errors import OnlineLearnerNotFoundError, RegistryEntryNotFoundError
from snn.train.runner import LossFn

__all__ = [
    "SEQUENCE_CLASSIFICATION",
    "LearnerNotFoundError",
    "resolve_loss",
    "resolve_backend",
    "resolve_learner",
    "resolve_device",
    "path_argument",
]

#: The loss signature ``snn train --loss`` accepts: ``loss(y_seq [T, N, C], target [N])``.
SEQUENCE_CLASSIFICATION = "sequence_classification"


class LearnerNotFoundError(OnlineLearnerNotFoundError):
    """``learner`` names neither ``bptt`` nor an installed online learner.

    The message lists ``bptt`` as built in and the installed online learners as such, and says
    how to install ``snn-online`` only when no online learner is installed.
    """

    def __init__(self, name: str, online: list[str], hint: str = "") -> None:
        RegistryEntryNotFoundError.__init__(self, "learner", name, ["bptt", *online], hint)


def resolve_loss(name: str) -> LossFn:
    """The registered loss ``name``, checked to take ``(y_seq [T, N, C], target [N])``.

    Raises:
        snn.errors.RegistryEntryNotFoundError: no plugin registered ``name`` (lists the losses
            ``snn train`` accepts).
        ValueError: ``name`` is registered with another signature (lists the accepted ones).
    """
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
        step_mode: the LIF neurons' step mode, ``'m'`` or ``'s'`` (it decides the kernel mode).
        surrogate: class name of the neurons' surrogate function.

    Returns:
        The backend name the neurons run on.

    Raises:
        snn.errors.BackendNotFoundError: unknown name (lists the installed ones).
        snn.errors.BackendUnavailableError: installed but its probe failed here.
        snn.errors.UnsupportedOperationError: it lacks the LIF kernel, the device or the dtype.
    """
    from snn.dispatch import KERNEL_MODE
    from snn.errors import UnsupportedOperationError
    from snn.neuron.integrate_and_fire import LIF_MODEL
    from snn.plugins import get_registry
    from snn.surrogate import SURROGATES, Sigmoid

    registry = get_registry()
    mode = KERNEL_MODE[step_mode]
    surrogate_cls = SURROGATES.get(surrogate) if surrogate is not None else None
    lif = LIF_MODEL.config((surrogate_cls() if surrogate_cls is not None else Sigmoid()).spec)
    if name == "auto":
        return registry.auto_backend(lif, mode, device.type, torch.float32)
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a string, got {type(name).__name__}")
    info = registry.backend(name)
    info.raise_if_unavailable()
    if name == "torch":  # the reference backend runs every neuron in both step modes
        return name
    if not info.serves_model(lif, mode):
        raise UnsupportedOperationError(name, f"neuron model 'lif' in kernel mode {mode!r}", registry.backends_serving(lif, mode))
    registry.check_kernel_inputs(name, device.type, torch.float32, lif)
    return name


def resolve_learner(name: str) -> Any:
    """``None`` for ``"bptt"``, else the registered :class:`snn.learning.OnlineLearner`.

    Raises:
        LearnerNotFoundError: unknown name (a :class:`~snn.errors.OnlineLearnerNotFoundError`:
            lists ``bptt`` and the installed online learners, with the install command of
            ``snn-online`` when none is installed).
    """
    if name == "bptt":
        return None
    from snn.plugins import get_registry

    registry = get_registry()
    if not isinstance(name, str) or name not in registry.learners:
        online = sorted(registry.learners)
        if online:
            hint = f"'bptt' (back-propagation through time) is built in; {', '.join(map(repr, online))} are online learners"
        else:
            hint = (
                "'bptt' (back-propagation through time) is built in; the online learners ottt, sltt and "
                'fptt come with snn-online: pip install "snn-core[online]" (from a checkout: '
                "pip install -e packages/snn-online)"
            )
        if registry.failures:
            hint += f"; {registry.failure_hint()}"
        raise LearnerNotFoundError(str(name), online, hint)
    return registry.learner(name).implementation


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else is parsed by torch.

    Raises:
        ValueError: not a device string, a device type other than CPU and CUDA (``meta``,
            ``mps`` ...: the training loop's generators and kernels run on those two), or CUDA
            asked for but not available (or a ``cuda:N`` that does not exist).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {expected}, got {name!r}") from exc
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise ValueError(f"device: {expected}, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but torch sees no CUDA device here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device: {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def path_argument(text: str) -> Path:
    """A command-line path: ``Path(text)``, refusing an empty one (``Path("")`` is the current
    folder, where a run would silently be written or looked for).

    Raises:
        argparse.ArgumentTypeError: ``text`` is empty or blank.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)

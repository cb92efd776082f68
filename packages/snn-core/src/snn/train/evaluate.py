"""Using a trained model: :func:`load_model` from Python, ``snn evaluate RUN_DIR`` from the shell.

``model.pt`` holds the weights and the configuration that rebuilds the network, as tensors and
plain data (it loads with ``torch.load(..., weights_only=True)``). :func:`load_model` rebuilds
the network and loads the weights; :func:`evaluate_model` measures its accuracy on the run's
own test split, reproducing the split, the coding and the batching of the training loop, so the
figure equals the one the run reported (on the same device, backend and thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch
from torch import nn

if TYPE_CHECKING:
    from snn.train.config import TrainConfig

__all__ = ["DESCRIPTION", "TrainedModel", "Evaluation", "load_model", "evaluate_model", "add_arguments", "run", "main"]

#: One line for ``snn --help``.
DESCRIPTION = "reload a run's model.pt and measure its test accuracy on the digits"


@dataclass
class TrainedModel:
    """A network rebuilt from a model file.

    Attributes:
        network: the network with the trained weights, in eval mode.
        config: the settings of the run that trained it.
        step_mode: ``'m'``: call it once on a whole sequence ``[T, N, *]``; ``'s'``: once per
            step ``[N, *]`` (online learners).
        backend: the backend its neurons run on.
        device: where it is.
        metrics: what the run recorded (``test_accuracy``, ``n_test``, ``epochs``).
        path: the file it came from.
    """

    network: nn.Module
    config: TrainConfig
    step_mode: str
    backend: str
    device: torch.device
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @torch.no_grad()
    def outputs(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Output spikes ``[T, N, 10]`` for images ``[N, 1, 8, 8]`` with values in ``[0, 1]``.

        The images are coded as in training (``config.encoding``; ``generator`` drives rate
        coding), and the network is reset before and after.

        Raises:
            ValueError: ``images`` is not ``[N, 1, 8, 8]``.
        """
        from snn.train.data import IMAGE_SHAPE
        from snn.train.runner import encode_batch, network_outputs

        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected a tensor [N, 1, 8, 8] with values in [0, 1], got {got}")
        x_seq = encode_batch(self.config, images.to(self.device, torch.float32), generator)
        return network_outputs(self.network, x_seq, self.step_mode)

    def predict(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Classes ``[N]`` (int64): the output neuron that fires most, per image (see :meth:`outputs`)."""
        from snn.train.runner import predict

        return predict(self.outputs(images, generator))


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate_model`.

    Attributes:
        test_accuracy: share of the run's test images classified right.
        right: how many.
        n_test: of how many.
        recorded_test_accuracy: what the run itself reported (``None`` if the file has none).
    """

    test_accuracy: float
    right: int
    n_test: int
    recorded_test_accuracy: float | None


def _model_path(path: Path) -> Path:
    from snn.train.checkpoint import MODEL_FILE

    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def load_model(path: str | Path, *, device: str | torch.device = "cpu", backend: str = "torch") -> TrainedModel:
    """Rebuild the network of a model file written by ``snn train``.

    Args:
        path: ``model.pt``, or the run folder that holds it.
        device: where to put the network.
        backend: the backend its neurons run on (``"torch"`` runs anywhere; the run's own
            backend is in ``torch.load(path, weights_only=True)["backend"]``).

    Returns:
        The :class:`TrainedModel`.

    Raises:
        snn.train.checkpoint.RunFileError: the file is missing, truncated, corrupted, holds
            pickled objects, is not an snn train model file, or its weights do not fit the
            network its configuration describes.
        snn.train.resolve.LearnerNotFoundError: it was trained by an online learner that is not
            installed here.
        TypeError: ``path`` is not a path, ``device`` neither a str nor a ``torch.device``.
        ValueError: ``device`` is not available.
        snn.errors.BackendNotFoundError: unknown ``backend`` (and the other errors of
            :func:`snn.train.resolve.resolve_backend`).
    """
    from snn.train.checkpoint import load_model_file

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model: path: expected a path (str or os.PathLike), got {type(path).__name__}")
    file = _model_path(Path(path))
    return _rebuild(load_model_file(file), file, device, backend)


def _rebuild(
    content: dict[str, Any], file: Path, device: str | torch.device, backend: str, *, from_run: tuple[str, ...] = ()
) -> TrainedModel:
    """The model of ``content`` on ``device`` and ``backend``; ``from_run`` names which of
    ``"device"`` and ``"backend"`` came from the file, not the caller: an error resolving one of
    those says so (:class:`RunFileError`), as the caller can choose another."""
    from snn import functional
    from snn.errors import SNNError
    from snn.train.checkpoint import RunFileError, too_large_error
    from snn.train.config import TrainConfig
    from snn.train.resolve import resolve_backend, resolve_device, resolve_learner
    from snn.train.runner import build_network, check_state_fits, surrogate_name

    try:
        config = TrainConfig.from_dict(content["config"])
    except (TypeError, ValueError) as exc:
        raise RunFileError(f"{file}: malformed model file: {exc}") from exc
    if isinstance(device, torch.device):
        device = str(device)  # checked as its name: a CUDA device this machine lacks is named
    if not isinstance(device, str):
        raise TypeError(f"load_model: device: expected a str or torch.device, got {type(device).__name__} {device!r}")
    try:
        target = resolve_device(device)
    except ValueError as exc:
        if "device" not in from_run:
            raise
        raise RunFileError(f"{file}: the run's device {device!r} cannot be used here (give --device to choose another): {exc}") from exc
    try:
        network, step_mode = build_network(config, resolve_learner(config.learner))
    except (MemoryError, RuntimeError) as exc:  # a configuration too large for this machine
        error = too_large_error(file, config.hidden, exc)
        if error is None:
            raise
        raise error from exc
    if step_mode != content["step_mode"]:
        raise RunFileError(f"{file}: malformed model file: step_mode {content['step_mode']!r} does not fit learner {config.learner!r}")
    try:
        check_state_fits(network, content["state_dict"], "state_dict")
        network.load_state_dict(content["state_dict"])
    except (RuntimeError, ValueError) as exc:  # missing, unexpected, misshapen or mistyped weights
        detail = " ".join(str(exc).replace("Error(s) in loading state_dict for", "").split())
        raise RunFileError(f"{file}: the weights do not fit the network its configuration describes ({detail})") from exc
    network.to(target).eval()
    try:
        chosen = resolve_backend(backend, target, step_mode, surrogate_name(network))
    except (SNNError, ValueError) as exc:
        if "backend" not in from_run:
            raise
        raise RunFileError(
            f"{file}: the run's backend {backend!r} cannot run here (give --backend to choose another): {exc}"
        ) from exc
    if step_mode == "m":
        functional.set_backend(network, chosen)
    return TrainedModel(network, config, step_mode, chosen, target, dict(content["metrics"]), file)


def evaluate_model(model: TrainedModel) -> Evaluation:
    """Test accuracy of ``model`` on the test split of the run that trained it.

    The split (``seed``, ``limit``), the coding and its random generator, and the evaluation
    batches are those of the training loop, and torch runs with the run's thread count, so on
    the run's device and backend the figure equals the run's own.

    Raises:
        snn.train.extras.DemoDependencyError: scikit-learn is missing.
    """
    from snn.train.data import load_digits_split
    from snn.train.runner import evaluate_network

    config = model.config
    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        data = load_digits_split(config.seed, limit=config.limit).to(model.device)
        generator = torch.Generator(device=model.device).manual_seed(config.seed + 3)
        right, _ = evaluate_network(model.network, model.step_mode, config, data, generator)
    finally:
        torch.set_num_threads(previous)
    n_test = len(data.y_test)
    recorded = model.metrics.get("test_accuracy")
    return Evaluation(right / max(n_test, 1), right, n_test, float(recorded) if isinstance(recorded, (int, float)) else None)


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``snn evaluate`` to ``parser``."""
    from snn.train.resolve import path_argument

    parser.add_argument("run_dir", type=path_argument, metavar="RUN_DIR", help="a run folder of snn train, or its model.pt")
    parser.add_argument("--device", default=None, help="where to evaluate (default: the run's device)")
    parser.add_argument("--backend", default=None, help="neuron backend (default: the run's backend)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``snn evaluate`` with parsed arguments.

    Returns:
        0 on success; 2 when the run folder or its ``model.pt`` is missing, unreadable or
        malformed, or a setting is bad; 1 for a missing demo dependency. Errors are one line
        ``snn evaluate: error: ...`` (plus ``{"error": ...}`` with ``--json``).
    """
    from snn.errors import SNNError
    from snn.train.checkpoint import load_model_file

    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        file = _model_path(args.run_dir)
        content = load_model_file(file)
        device = args.device if args.device is not None else str(content.get("device", "cpu"))
        backend = args.backend if args.backend is not None else str(content.get("backend", "torch"))
        # an error about the run's own device or backend (from the file, not the command line) says so
        from_run = tuple(what for what, given in (("device", args.device), ("backend", args.backend)) if given is None)
        model = _rebuild(content, file, device, backend, from_run=from_run)
        result = evaluate_model(model)
    except (SNNError, ValueError, TypeError, ImportError) as exc:
        print(f"snn evaluate: error: {exc}", file=stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "error_type": type(exc).__name__}), file=stdout)
        return 1 if isinstance(exc, ImportError) else 2
    if args.json:
        print(json.dumps({
            "test_accuracy": result.test_accuracy, "right": result.right, "n_test": result.n_test,
            "recorded_test_accuracy": result.recorded_test_accuracy, "model_file": str(file),
            "device": str(model.device), "backend": model.backend,
        }), file=stdout)
        return 0
    recorded = result.recorded_test_accuracy
    note = "" if recorded is None else f"; the run recorded {100 * recorded:.2f}%"
    print(f"test accuracy {100 * result.test_accuracy:.2f}% ({result.right}/{result.n_test} test images) of "
          f"{file} on {model.device}, backend {model.backend}{note}", file=stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snn.train.evaluate RUN_DIR``: the same as ``snn evaluate RUN_DIR``."""
    parser = argparse.ArgumentParser(prog="snn evaluate", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

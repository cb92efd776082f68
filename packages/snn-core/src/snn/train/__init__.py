"""``snn train``: a small end-to-end demo that trains a spiking network on the 8x8 digits.

Programmatic use::

    from snn.train import TrainConfig, load_model, train

    result = train(TrainConfig(epochs=5, learner="bptt"), run_dir="runs/demo")
    print(result.test_accuracy)
    trained = load_model("runs/demo/model.pt")      # the network, rebuilt from the model file

The command lines live in :mod:`snn.train.command` (``snn train --help``) and
:mod:`snn.train.evaluate` (``snn evaluate --help``). Everything here needs the demo extra,
``pip install "snn-core[demo]"``; its packages are imported lazily.
"""

from __future__ import annotations

from snn.train.checkpoint import RunFileError, load_checkpoint
from snn.train.evaluate import Evaluation, TrainedModel, evaluate_model, load_model
from snn.train.loop import EpochRecord, TrainConfig, TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "EpochRecord",
    "train",
    "load_checkpoint",
    "load_model",
    "evaluate_model",
    "TrainedModel",
    "Evaluation",
    "RunFileError",
]

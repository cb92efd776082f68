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

import importlib
from typing import TYPE_CHECKING, Any

from snn.train.checkpoint import RunFileError, load_checkpoint
from snn.train.config import EpochRecord, TrainConfig, TrainResult
from snn.train.loop import train

if TYPE_CHECKING:
    from snn.train.evaluate import Evaluation, TrainedModel, evaluate_model, load_model

#: Names of :mod:`snn.train.evaluate`, imported on first use: importing that module with the
#: package would make ``python -m snn.train.evaluate`` run a module already imported (runpy
#: warns about it).
_FROM_EVALUATE = frozenset({"Evaluation", "TrainedModel", "evaluate_model", "load_model"})

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


def __getattr__(name: str) -> Any:
    if name in _FROM_EVALUATE:
        value = getattr(importlib.import_module("snn.train.evaluate"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'snn.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_EVALUATE)

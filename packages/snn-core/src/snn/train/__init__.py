"""``snn train``: a small end-to-end demo that trains a spiking network on the 8x8 digits.

Programmatic use::

    from snn.train import TrainConfig, train

    result = train(TrainConfig(epochs=5, learner="bptt"))
    print(result.test_accuracy)

The command line lives in :mod:`snn.train.command` (``snn train --help``). Everything here
needs the demo extra, ``pip install "snn-core[demo]"``; its packages are imported lazily.
"""

from __future__ import annotations

from snn.train.loop import EpochRecord, TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "EpochRecord", "train"]

"""The snn plugin of the ``snn-online`` distribution (entry point ``online`` in group ``snn``).

Registers the online learners ``ottt``, ``sltt`` and ``fptt``. Importing this module is cheap:
the neurons and layers are imported only when a learner builds a network.
"""

from __future__ import annotations

import snn
from snn.registry import LearnerRegistrar
from snn_online.learners import FPTTLearner, OTTTLearner, SLTTLearner

__all__ = ["snn_register_online_learners"]


@snn.hookimpl
def snn_register_online_learners(register: LearnerRegistrar) -> None:
    """Register ``ottt``, ``sltt`` and ``fptt``.

    All three declare ``data_parallel=True``: each call of the network they train is followed
    by one backward pass, and FPTT's running average is computed from the (all-reduced)
    gradients and weights, so ``snn train --nproc N`` may run them under DDP.

    Args:
        register: the registrar handed in by the plugin manager.
    """
    register(
        "ottt",
        OTTTLearner(),
        description="OTTT: online training through time with presynaptic traces (batch-first input)",
        data_parallel=True,
    )
    register(
        "sltt",
        SLTTLearner(),
        description="SLTT: spatial learning through time, no temporal gradients (batch-first input)",
        data_parallel=True,
    )
    register(
        "fptt",
        FPTTLearner(),
        description="FPTT: forward propagation through time, a regularised update per step (time-first input)",
        data_parallel=True,
    )

"""The snn plugin of the ``snn-online`` distribution (entry point ``online`` in group ``snn``).

Registers the online learners ``ottt``, ``sltt`` and ``fptt``. Importing this module is cheap:
the neurons and layers are imported only when a learner builds a network.
"""

from __future__ import annotations

from typing import Any

import snn
from snn_online.learners import FPTTLearner, OTTTLearner, SLTTLearner

__all__ = ["snn_register_online_learners"]


@snn.hookimpl
def snn_register_online_learners(register: Any) -> None:
    """Register ``ottt``, ``sltt`` and ``fptt``.

    Args:
        register: the :class:`snn.registry.LearnerRegistrar` handed in by the plugin manager.
    """
    register(
        "ottt",
        OTTTLearner(),
        description="OTTT: online training through time with presynaptic traces (batch-first input)",
    )
    register(
        "sltt",
        SLTTLearner(),
        description="SLTT: spatial learning through time, no temporal gradients (batch-first input)",
    )
    register(
        "fptt",
        FPTTLearner(),
        description="FPTT: forward propagation through time, a regularised update per step (time-first input)",
    )

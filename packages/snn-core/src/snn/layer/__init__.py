"""Layers for spiking networks: containers, recurrent containers, dropout and step-mode wrappers.

- Containers (:mod:`snn.layer.containers`) run single-step modules over sequences:
  :class:`MultiStepContainer` (any registered forward strategy), :class:`SeqToANNContainer`,
  :class:`TLastMultiStepContainer`, :class:`TLastSeqToANNContainer`, :class:`StepModeContainer`.
- Recurrent containers (:mod:`snn.layer.recurrent`): :class:`ElementWiseRecurrentContainer`,
  :class:`LinearRecurrentContainer`.
- :class:`Dropout` (:mod:`snn.layer.dropout`): one mask per sequence.
- :class:`SynapseFilter`, :class:`VotingLayer`, :class:`Delay` (:mod:`snn.layer.misc`): a
  filtering synapse, a population read-out and a delay line.
- :class:`WSConv2d`, :class:`WSLinear` (:mod:`snn.layer.weight_standardization`):
  weight-standardised ``Conv2d`` and ``Linear``.
- Step-mode-aware torch layers (:mod:`snn.layer.wrappers`): ``Linear``, ``Conv*d``,
  ``ConvTranspose*d``, ``BatchNorm*d``, ``GroupNorm``, ``MaxPool*d``, ``MaxUnpool*d``,
  ``AvgPool*d``, ``AdaptiveAvgPool*d``, ``Flatten``, ``Upsample``: the torch layer in step mode
  ``'s'``, the torch layer over ``[T * N, ...]`` in step mode ``'m'``.
"""

from __future__ import annotations

from snn.layer.containers import (
    MultiStepContainer,
    SeqToANNContainer,
    StepModeContainer,
    TLastMultiStepContainer,
    TLastSeqToANNContainer,
    check_single_step_children,
)
from snn.layer.dropout import Dropout
from snn.layer.misc import Delay, SynapseFilter, VotingLayer
from snn.layer.recurrent import ElementWiseRecurrentContainer, LinearRecurrentContainer
from snn.layer.weight_standardization import WSConv2d, WSLinear
from snn.layer.wrappers import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    Flatten,
    GroupNorm,
    Linear,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
    StepModeWrapper,
    Upsample,
)

__all__ = [
    # containers
    "MultiStepContainer",
    "SeqToANNContainer",
    "TLastMultiStepContainer",
    "TLastSeqToANNContainer",
    "StepModeContainer",
    "check_single_step_children",
    # recurrent containers
    "ElementWiseRecurrentContainer",
    "LinearRecurrentContainer",
    # dropout
    "Dropout",
    # synapse, read-out, delay
    "SynapseFilter",
    "VotingLayer",
    "Delay",
    # weight standardisation
    "WSConv2d",
    "WSLinear",
    # step-mode-aware torch layers
    "StepModeWrapper",
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "Flatten",
    "Upsample",
]

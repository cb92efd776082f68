"""IF / LIF / PLIF configurations and kernels as the cross-package tests use them.

The tests here check backends against the integrate-and-fire family's equations written out by
hand (not through the model descriptions). :class:`FamilyConfig` carries those equations'
parameters by name (``kind``, ``tau``, ``decay_input`` ...) next to the generic
:class:`snn.models.NeuronConfig` the kernels receive, and :func:`family_kernel` calls a
backend's generic kernel with the family's one state ``v`` and PLIF's ``w``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snn.models import NeuronConfig, SurrogateSpec

__all__ = ["FamilyConfig", "family_kernel", "family_serves"]


class FamilyConfig:
    """An IF / LIF / PLIF layer's parameters, and its :class:`~snn.models.NeuronConfig`."""

    def __init__(
        self, kind: str, v_threshold: float, v_reset: float | None, detach_reset: bool,
        decay_input: bool, tau: float | None, surrogate: SurrogateSpec,
    ) -> None:
        from snn.neuron.integrate_and_fire import IF_MODEL, LIF_MODEL, PLIF_MODEL

        self.kind, self.v_threshold, self.v_reset = kind, v_threshold, v_reset
        self.detach_reset, self.decay_input, self.tau, self.surrogate = detach_reset, decay_input, tau, surrogate
        hyper: dict[str, Any] = {"v_threshold": v_threshold, "v_reset": v_reset}
        if kind != "if":
            hyper["decay_input"] = decay_input
        if kind == "lif":
            hyper["tau"] = tau
        model = {"if": IF_MODEL, "lif": LIF_MODEL, "plif": PLIF_MODEL}[kind]
        self.config: NeuronConfig = model.config(surrogate, detach_reset, **hyper)

    @property
    def hard_reset(self) -> bool:
        return self.v_reset is not None

    @property
    def reset_potential(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset


def family_kernel(backend: str, kind: str) -> Callable[..., tuple[Any, Any, Any]]:
    """``kernel(x_seq, v0, family_config, *, w=None, store_v_seq=False) -> (spikes, v_last, v_seq)``."""
    from snn.plugins import get_registry

    generic = get_registry().kernel(backend, "multi_step")

    def kernel(x_seq: torch.Tensor, v0: torch.Tensor, config: FamilyConfig, *,
               w: torch.Tensor | None = None, store_v_seq: bool = False) -> tuple[Any, Any, Any]:
        assert config.kind == kind
        spikes, (v_last,), seqs = generic(
            x_seq, (v0,), config.config, learnables=(w,) if w is not None else (), store_state_seqs=store_v_seq
        )
        return spikes, v_last, (seqs[0] if seqs is not None else None)

    return kernel


def family_serves(info: Any, kind: str) -> bool:
    """Whether backend ``info`` has a multi-step kernel for the model ``kind``."""
    from snn.plugins import get_registry

    return bool(info.serves_model(get_registry().model(kind), "multi_step"))

"""Hook implementations, right and wrong, that mypy checks in ``test_mypy_plugin.py``.

Not a test module (pytest does not collect it) and never imported: mypy reads it with snn's
configuration (``snn.mypy_plugin``, ``disallow_untyped_defs``). A line ending in
``# expect: CODE[, CODE]`` must get exactly those mypy error codes; every other line none.
"""

from __future__ import annotations

import types

import torch

import snn
from snn.registry import (
    BackendRegistrar,
    LearnerRegistrar,
    LossRegistrar,
    NeuronModelRegistrar,
    StrategyRegistrar,
)


def probe() -> str | None:
    return None


# -- right: each registrar where its hook passes it ---------------------------------------------


@snn.hookimpl
def snn_register_backends(register: BackendRegistrar) -> None:
    register(
        "typed", {"multi_step": "typed_kernels:multi_step"}, devices=("cpu",), dtypes=(torch.float32,),
        probe=probe, operations=("+", "*"),
    )


@snn.hookimpl
def snn_register_losses(register: LossRegistrar) -> None:
    register("zero", lambda y_seq, target: y_seq.sum() * 0, signature="sequence_classification")


class ClassPlugin:
    """A plugin object: methods are implementations too (``self`` is not a hook argument)."""

    @snn.hookimpl
    def snn_register_forward_strategies(self, register: StrategyRegistrar) -> None:
        register("noop", lambda module, x_seq: x_seq)

    @staticmethod
    @snn.hookimpl
    def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
        return None


@snn.hookimpl
def snn_register_online_learners() -> None:  # an implementation may take fewer arguments
    return None


# -- wrong: a registrar that is not the one the hook passes -------------------------------------


class WrongRegistrar:
    @snn.hookimpl  # expect: snn-hookimpl
    def snn_register_backends(self, register: LossRegistrar) -> None:
        register("loss-not-backend", lambda y_seq, target: y_seq.sum())

    @snn.hookimpl  # expect: snn-hookimpl
    def snn_register_losses(self, register: LearnerRegistrar) -> None:
        return None


# -- wrong: arguments of a call the registrar does not take ------------------------------------


class WrongCall:
    @snn.hookimpl
    def snn_register_backends(self, register: BackendRegistrar) -> None:
        register(  # expect: call-arg
            "typo", {"multi_step": "typed_kernels:multi_step"}, device=("cpu",), dtypes=(torch.float32,),
            probe=probe, operations=("+",),
        )
        register(
            "strings", {"multi_step": "typed_kernels:multi_step"}, devices=("cpu",), dtypes=("float32",),  # expect: arg-type
            probe=probe, operations=("+",),
        )


# -- wrong: arguments, return values and names the hooks do not have ---------------------------


class WrongShape:
    @snn.hookimpl  # expect: snn-hookimpl
    def snn_register_losses(self, registrar: LossRegistrar) -> None:
        return None

    @snn.hookimpl  # expect: snn-hookimpl
    def snn_register_forward_strategies(self, register: StrategyRegistrar) -> int:
        return 0

    @snn.hookimpl  # expect: snn-hookimpl
    def snn_register_widgets(self, register: LossRegistrar) -> None:
        return None


# -- wrong: an untyped implementation (disallow_untyped_defs) ------------------------------------


class Untyped:
    @snn.hookimpl
    def snn_register_losses(self, register):  # expect: no-untyped-def
        register(1)


# -- the call form is checked too (for functions named after their hook) --------------------------


def _learners(register: LossRegistrar) -> None:
    return None


# not checked: the plugin sees the function's own name, pluggy the attribute name (a known limit)
unchecked_namespace_plugin = types.SimpleNamespace(snn_register_online_learners=snn.hookimpl(_learners))


def snn_register_neuron_models(register: LossRegistrar) -> None:
    return None


wrong_namespace_plugin = types.SimpleNamespace(
    snn_register_neuron_models=snn.hookimpl(snn_register_neuron_models),  # expect: snn-hookimpl
)


# -- wrong: a registrar option that does not exist (it used to land in **metadata) -------------


class MisspeltOption:
    @snn.hookimpl
    def snn_register_losses(self, register: LossRegistrar) -> None:
        register("typo", lambda y_seq, target: y_seq.sum(), descripton="x")  # expect: call-arg

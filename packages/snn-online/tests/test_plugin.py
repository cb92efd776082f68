"""The entry point, the registered learners and the package's public names."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

import snn_online
from snn import plugins
from snn.errors import OnlineLearnerNotFoundError
from snn.learning import OnlineLearner
from snn.registry import Registry
from snn_online.learners import FPTTLearner, OTTTLearner, SLTTLearner


def test_entry_point_is_declared_in_group_snn() -> None:
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="snn")}
    assert found.get("online") == "snn_online.plugin"


def test_learners_are_discovered_with_provenance(fresh_plugin_manager: Registry) -> None:
    expected = {"ottt": OTTTLearner, "sltt": SLTTLearner, "fptt": FPTTLearner}
    assert not [f for f in fresh_plugin_manager.failures if f.plugin == "online"]
    for name, cls in expected.items():
        item = fresh_plugin_manager.learner(name)
        assert type(item.implementation) is cls
        assert isinstance(item.implementation, OnlineLearner)
        assert item.provenance.plugin == "online"
        assert item.provenance.distribution == "snn-online"
        assert item.provenance.version == "0.1.0"
        assert item.description


def test_disabling_the_plugin_removes_the_learners(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn import functional

    monkeypatch.setenv("SNN_DISABLED_PLUGINS", "online")
    plugins.reset()
    try:
        assert "ottt" not in plugins.get_registry().learners
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        with pytest.raises(OnlineLearnerNotFoundError, match="snn-core\\[online\\]"):
            functional.fptt_online_training_init_w_ra(optimizer)
    finally:
        monkeypatch.delenv("SNN_DISABLED_PLUGINS")
        plugins.reset()


def test_public_names() -> None:
    assert snn_online.__all__ == [
        "__version__",
        "OTTTLIFNode",
        "SLTTLIFNode",
        "ReplaceforGrad",
        "GradwithTrace",
        "SpikeTraceOp",
        "OTTTSequential",
        "OTTTLearner",
        "SLTTLearner",
        "FPTTLearner",
    ]
    for name in snn_online.__all__:
        assert getattr(snn_online, name) is not None
    assert snn_online.__version__ == importlib.metadata.version("snn-online")
    with pytest.raises(AttributeError, match="no attribute"):
        snn_online.NotAThing  # noqa: B018


def test_learner_factories_and_time_dims() -> None:
    from torch import nn

    from snn.neuron import LIFNode
    from snn_online import OTTTLIFNode, OTTTSequential, SLTTLIFNode

    ottt, sltt, fptt = OTTTLearner(), SLTTLearner(), FPTTLearner()
    assert (ottt.time_dim, sltt.time_dim, fptt.time_dim) == (1, 1, 0)
    neuron = ottt.make_neuron(tau=3.0)
    assert type(neuron) is OTTTLIFNode and neuron.tau == 3.0
    assert type(sltt.make_neuron()) is SLTTLIFNode
    assert type(fptt.make_neuron()) is LIFNode
    layers = [nn.Linear(2, 2), ottt.make_neuron()]
    wrapped = ottt.wrap_model(layers)
    assert type(wrapped) is OTTTSequential and list(wrapped) == layers
    assert type(sltt.wrap_model(layers)) is nn.Sequential
    with pytest.raises(ValueError, match="single-step"):
        ottt.make_neuron(step_mode="m")

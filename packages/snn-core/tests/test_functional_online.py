"""snn.functional online-learning pipelines: argument checks and dispatch to registered learners."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
from torch import nn

import snn
from snn import functional
from snn.errors import OnlineLearnerNotFoundError
from snn.learning import OnlineLearner
from snn.registry import LearnerRegistrar, Registry


class RecordingLearner(OnlineLearner):
    """Records how it is called and returns values computed from its inputs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def init_state(self, model: Any, optimizer: torch.optim.Optimizer) -> Any:
        self.calls.append(("init_state", (model, optimizer), {}))
        return [p.detach().clone() for group in optimizer.param_groups for p in group["params"]]

    def train_sequence(  # type: ignore[no-untyped-def]  # records whatever it is given, untyped on purpose
        self, model, optimizer, x_seq, target_seq, f_loss_t, state=None, **options
    ):
        self.calls.append(("train_sequence", (model, optimizer, x_seq, target_seq, f_loss_t), {"state": state, **options}))
        return x_seq.sum().detach(), x_seq.detach() * 2


@pytest.fixture
def learners(monkeypatch: pytest.MonkeyPatch, temporary_plugin: Any) -> dict[str, RecordingLearner]:
    """Fake 'fptt' and 'ottt' learners; installed learner plugins are switched off."""
    monkeypatch.setenv("SNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    fakes = {"fptt": RecordingLearner("fptt"), "ottt": RecordingLearner("ottt")}

    @snn.hookimpl
    def snn_register_online_learners(register: LearnerRegistrar) -> None:
        for name, learner in fakes.items():
            register(name, learner)

    temporary_plugin(types.SimpleNamespace(snn_register_online_learners=snn_register_online_learners), name="fake-online")
    return fakes


def _setup() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def loss_fn(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((y - target) ** 2).mean()


def test_fptt_init_w_ra_dispatches_to_learner(learners: dict[str, RecordingLearner]) -> None:
    model, optimizer = _setup()
    w_ra = functional.fptt_online_training_init_w_ra(optimizer)
    assert learners["fptt"].calls == [("init_state", (None, optimizer), {})]
    assert [w.shape for w in w_ra] == [p.shape for p in model.parameters()]


def test_fptt_online_training_dispatches_and_returns_none(learners: dict[str, RecordingLearner]) -> None:
    model, optimizer = _setup()
    x_seq = torch.randn(3, 1, 2)
    target_seq = torch.randn(3, 1, 1)
    w_ra = [torch.zeros(1, 2), torch.zeros(1)]
    result = functional.fptt_online_training(model, optimizer, x_seq, target_seq, loss_fn, 0.5, w_ra)
    assert result is None
    ((kind, args, kwargs),) = learners["fptt"].calls
    assert kind == "train_sequence"
    assert args[0] is model and args[1] is optimizer and args[2] is x_seq and args[3] is target_seq and args[4] is loss_fn
    assert kwargs == {"state": w_ra, "alpha": 0.5}
    assert kwargs["state"] is w_ra
    assert learners["ottt"].calls == []


@pytest.mark.parametrize("online", [True, False])
def test_ottt_online_training_dispatches_and_returns_pair(learners: dict[str, RecordingLearner], online: bool) -> None:
    model, optimizer = _setup()
    x_seq = torch.randn(4, 3, 2)
    target_seq = torch.randn(4, 3, 1)
    batch_loss, y_all = functional.ottt_online_training(model, optimizer, x_seq, target_seq, loss_fn, online)
    torch.testing.assert_close(batch_loss, x_seq.sum())
    torch.testing.assert_close(y_all, x_seq * 2)
    ((kind, args, kwargs),) = learners["ottt"].calls
    assert args[2] is x_seq and args[3] is target_seq
    assert kwargs == {"state": None, "online": online}


def test_missing_learners_raise_with_install_hint(monkeypatch: pytest.MonkeyPatch, fresh_plugin_manager: Registry) -> None:
    monkeypatch.setenv("SNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    snn.plugins.reset()
    model, optimizer = _setup()
    with pytest.raises(OnlineLearnerNotFoundError, match=r'pip install "snn-core\[online\]"'):
        functional.fptt_online_training_init_w_ra(optimizer)
    with pytest.raises(OnlineLearnerNotFoundError, match="'fptt'"):
        functional.fptt_online_training(model, optimizer, torch.randn(2, 1, 2), torch.randn(2, 1, 1), loss_fn, 0.5, [])
    with pytest.raises(OnlineLearnerNotFoundError, match="'ottt'"):
        functional.ottt_online_training(model, optimizer, torch.randn(1, 2, 2), torch.randn(1, 2, 1), loss_fn, True)


def test_argument_validation(learners: dict[str, RecordingLearner]) -> None:
    model, optimizer = _setup()
    x = torch.randn(2, 3, 2)
    t = torch.randn(2, 3, 1)
    with pytest.raises(TypeError, match=r"optimizer: expected a torch.optim.Optimizer \(or an object with param_groups, step\(\) and zero_grad\(\)\), got list"):
        functional.fptt_online_training_init_w_ra([])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="alpha: expected a finite number > 0, got 0"):
        functional.fptt_online_training(model, optimizer, x, t, loss_fn, 0, [])
    with pytest.raises(TypeError, match="alpha: expected a positive real number"):
        functional.fptt_online_training(model, optimizer, x, t, loss_fn, "0.5", [])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="w_ra: expected the list returned by fptt_online_training_init_w_ra, got tuple"):
        functional.fptt_online_training(model, optimizer, x, t, loss_fn, 0.5, ())  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        functional.fptt_online_training(lambda v: v, optimizer, x, t, loss_fn, 0.5, [])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="f_loss_t: expected a callable"):
        functional.ottt_online_training(model, optimizer, x, t, None, True)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"x_seq: expected a tensor \[B, T, \*\], got shape \(3,\)"):
        functional.ottt_online_training(model, optimizer, torch.randn(3), t, loss_fn, True)
    with pytest.raises(ValueError, match=r"target_seq: expected leading dims \[B, T'\] with B = 2 and T' >= T = 3"):
        functional.ottt_online_training(model, optimizer, x, torch.randn(3, 2, 1), loss_fn, True)
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 1\)"):
        functional.ottt_online_training(model, optimizer, x, torch.randn(2, 2, 1), loss_fn, True)
    with pytest.raises(TypeError, match=r"ottt_online_training: online: expected a bool \(or the integer 0 or 1, a NumPy bool, a one-element boolean tensor\), got int 2"):
        functional.ottt_online_training(model, optimizer, x, t, loss_fn, 2)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="online: expected a bool .* got NoneType None"):
        functional.ottt_online_training(model, optimizer, x, t, loss_fn, None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    assert learners["fptt"].calls == [] and learners["ottt"].calls == []


def test_online_takes_what_the_reference_tests_for_truth(learners: dict[str, RecordingLearner]) -> None:
    """SpikingJelly tests ``online`` for truth: 0 / 1, NumPy bools and a boolean tensor pass, as bools."""
    import numpy as np

    model, optimizer = _setup()
    x, t = torch.randn(2, 3, 2), torch.randn(2, 3, 1)
    loss_fn = torch.nn.functional.mse_loss
    for flag, expected in [(1, True), (0, False), (np.True_, True), (np.False_, False), (torch.tensor(True), True)]:
        functional.ottt_online_training(model, optimizer, x, t, loss_fn, flag)  # type: ignore[arg-type]  # other flag types on purpose
        assert learners["ottt"].calls[-1][2]["online"] is expected


def test_alpha_takes_any_real_number_and_one_element_tensors(learners: dict[str, RecordingLearner]) -> None:
    """As the learner (numbers.Real) and the reference (a tensor alpha) do."""
    import numpy as np

    model, optimizer = _setup()
    x, t = torch.randn(3, 1, 2), torch.randn(3, 1, 1)
    for alpha in (np.float32(0.5), torch.tensor(0.5), 1):
        functional.fptt_online_training(model, optimizer, x, t, loss_fn, alpha, [])  # type: ignore[arg-type]  # real numbers other than float on purpose
    assert [call[2]["alpha"] for call in learners["fptt"].calls] == [0.5, 0.5, 1]


def test_ottt_accepts_targets_longer_than_the_inputs(learners: dict[str, RecordingLearner]) -> None:
    """Step t reads target_seq[:, t], as in the reference and the learner."""
    model, optimizer = _setup()
    functional.ottt_online_training(model, optimizer, torch.randn(2, 3, 2), torch.randn(2, 4, 1), loss_fn, True)
    assert len(learners["ottt"].calls) == 1


class _ClippingOptimizer:
    """An optimizer wrapper that is not a torch.optim.Optimizer (as SpikingJelly accepts)."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        self.inner = inner

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none)

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_([p for g in self.param_groups for p in g["params"]], 1.0)
        self.inner.step()


def test_optimizer_wrappers_are_passed_to_the_learners(learners: dict[str, RecordingLearner]) -> None:
    model, inner = _setup()
    wrapper = _ClippingOptimizer(inner)
    x, t = torch.randn(2, 3, 2), torch.randn(2, 3, 1)
    functional.fptt_online_training_init_w_ra(wrapper)  # type: ignore[arg-type]  # duck-typed on purpose
    functional.ottt_online_training(model, wrapper, x, t, loss_fn, True)  # type: ignore[arg-type]  # duck-typed on purpose
    assert learners["fptt"].calls[0][1] == (None, wrapper)
    assert learners["ottt"].calls[0][1][:2] == (model, wrapper)
    not_one = type("NotAnOptimizer", (), {"param_groups": [{"lr": 0.1}], "step": lambda self: None,
                                          "zero_grad": lambda self: None})()
    with pytest.raises(TypeError, match="optimizer: expected a torch.optim.Optimizer .*got NotAnOptimizer"):
        functional.fptt_online_training_init_w_ra(not_one)  # type: ignore[arg-type]  # a wrong type on purpose

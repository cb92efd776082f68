"""snn.kernels.check_kernel_arguments: every error path, and what it must accept."""

from __future__ import annotations

import re

import pytest
import torch

from snn import kernels
from snn.kernels import NeuronConfig, SurrogateSpec, check_kernel_arguments
from snn.models import HyperParameter, NeuronModel, State
from snn.neuron.integrate_and_fire import IF_MODEL, LIF_MODEL, PLIF_MODEL

META = torch.device("meta")
SIGMOID = SurrogateSpec("Sigmoid", (("alpha", 4.0),))
MODELS = {"if": IF_MODEL, "lif": LIF_MODEL, "plif": PLIF_MODEL}
# a two-state model: the contract's checks run per state
TWO_STATES = NeuronModel(
    name="two_states",
    states=(State("v"), State("c")),
    hyperparameters=(HyperParameter("v_threshold", 1.0),),
    charge=lambda x, u, p, ops: {"c": u.c * 0.5 + x, "v": u.v * 0.5 + u.c},
)


def config(kind: str = "lif") -> NeuronConfig:
    model = TWO_STATES if kind == "two_states" else MODELS[kind]
    return model.config(SIGMOID)


def good(kind: str = "lif", steps: int = 3, shape: tuple[int, ...] = (2, 5)) -> dict[str, object]:
    """Valid keyword arguments of one call."""
    cfg = config(kind)
    return {
        "x_seq": torch.zeros(steps, *shape),
        "states": tuple(torch.zeros(shape) for _ in cfg.model.states),
        "config": cfg,
        "learnables": tuple(torch.zeros(()) for _ in cfg.model.learnables),
    }


def test_is_public() -> None:
    assert "check_kernel_arguments" in kernels.__all__


@pytest.mark.parametrize("kind", ["if", "lif", "plif", "two_states"])
def test_accepts_valid_calls(kind: str) -> None:
    check_kernel_arguments(**good(kind))  # type: ignore[arg-type]  # a dict of mixed argument types
    check_kernel_arguments(**good(kind, steps=1, shape=()))  # type: ignore[arg-type]  # T = 1, scalar neurons
    args = good(kind)
    x = torch.zeros(5, 2, 3).transpose(0, 2)  # [3, 2, 5], not contiguous
    check_kernel_arguments(x, args["states"], args["config"], args["learnables"])
    states_list = list(args["states"])  # type: ignore[call-overload]  # as above
    check_kernel_arguments(args["x_seq"], states_list, args["config"], list(args["learnables"]))  # type: ignore[call-overload]  # as above
    cfg = config(kind)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):  # backend dtypes are not the contract's business
        check_kernel_arguments(
            torch.zeros(2, 4, dtype=dtype), tuple(torch.zeros(4, dtype=dtype) for _ in cfg.model.states), cfg,
            tuple(torch.zeros(1, dtype=torch.float64) for _ in cfg.model.learnables),
        )
    states = tuple(torch.zeros(2, 5) for _ in cfg.model.states)
    learn = args["learnables"]
    check_kernel_arguments(torch.zeros(2, 5), states, cfg, learn, single_step=True)
    scalar_states = tuple(torch.tensor(0.0) for _ in cfg.model.states)
    check_kernel_arguments(torch.tensor(0.5), scalar_states, cfg, learn, single_step=True)


def _case(name: str) -> tuple[dict[str, object], bool]:
    """``(arguments, single_step)`` of one bad call."""
    args = good("lif")
    plif = good("plif")
    single = False
    if name == "config type":
        args["config"] = {"kind": "lif"}
    elif name == "x_seq not a tensor":
        args["x_seq"] = [[0.0] * 10] * 3
    elif name == "x_seq integer":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.int32)
        args["states"] = (torch.zeros(2, 5, dtype=torch.int32),)
    elif name == "x_seq bool":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.bool)
    elif name == "x_seq complex":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.complex64)
    elif name == "x_seq rank 0":
        args["x_seq"] = torch.tensor(0.5)
        args["states"] = (torch.tensor(0.0),)
    elif name == "x_seq empty":
        args["x_seq"] = torch.zeros(0, 2, 5)
    elif name == "states a tensor":
        args["states"] = torch.zeros(2, 5)
    elif name == "states count":
        args["states"] = (torch.zeros(2, 5), torch.zeros(2, 5))
    elif name == "state not a tensor":
        args["states"] = (0.0,)
    elif name == "state shape":
        args["states"] = (torch.zeros(2, 6),)
    elif name == "state shape of x_seq":
        args["states"] = (torch.zeros(3, 2, 5),)
    elif name == "state dtype":
        args["states"] = (torch.zeros(2, 5, dtype=torch.float64),)
    elif name == "state device":
        args["states"] = (torch.zeros(2, 5, device=META),)
    elif name == "second state shape":
        args = good("two_states")
        args["states"] = (torch.zeros(2, 5), torch.zeros(5))
    elif name == "learnable missing":
        args, plif["learnables"] = plif, ()
    elif name == "learnables a tensor":
        args, plif["learnables"] = plif, torch.zeros(())
    elif name == "learnable not a tensor":
        args, plif["learnables"] = plif, (0.0,)
    elif name == "learnable two elements":
        args, plif["learnables"] = plif, (torch.zeros(2),)
    elif name == "learnable integer":
        args, plif["learnables"] = plif, (torch.zeros((), dtype=torch.int64),)
    elif name == "learnable device":
        args, plif["learnables"] = plif, (torch.zeros((), device=META),)
    elif name == "learnable for lif":
        args["learnables"] = (torch.zeros(()),)
    elif name == "single x integer":
        args["x_seq"] = torch.zeros(2, 5, dtype=torch.int64)
        args["states"] = (torch.zeros(2, 5),)
        single = True
    elif name == "single state shape":
        args["x_seq"] = torch.zeros(2, 5)
        args["states"] = (torch.zeros(5),)
        single = True
    elif name == "single state dtype":
        args["x_seq"] = torch.zeros(2, 5)
        args["states"] = (torch.zeros(2, 5, dtype=torch.float16),)
        single = True
    else:  # pragma: no cover
        raise AssertionError(name)
    return args, single


#: case -> (error type, the argument the message must name, a fragment it must contain)
ERRORS: dict[str, tuple[type[Exception], str, str]] = {
    "config type": (TypeError, "config", "NeuronConfig, got dict"),
    "x_seq not a tensor": (TypeError, "x_seq", "floating-point tensor, got list"),
    "x_seq integer": (TypeError, "x_seq", "got torch.int32"),
    "x_seq bool": (TypeError, "x_seq", "got torch.bool"),
    "x_seq complex": (TypeError, "x_seq", "got torch.complex64"),
    "x_seq rank 0": (ValueError, "x_seq", "T >= 1, got ()"),
    "x_seq empty": (ValueError, "x_seq", "T >= 1, got (0, 2, 5)"),
    "states a tensor": (TypeError, "states", "a tuple of 1 tensor(s) ('v',), got a tensor of shape (2, 5)"),
    "states count": (ValueError, "states", "model 'lif' has 1 state(s) ('v',), got 2"),
    "state not a tensor": (TypeError, "states['v']", "a tensor, got float"),
    "state shape": (ValueError, "states['v']", "expected shape (2, 5) (one step of x_seq), got (2, 6)"),
    "state shape of x_seq": (ValueError, "states['v']", "got (3, 2, 5)"),
    "state dtype": (TypeError, "states['v']", "dtype torch.float32 on cpu like x_seq, got torch.float64 on cpu"),
    "state device": (TypeError, "states['v']", "got torch.float32 on meta"),
    "second state shape": (ValueError, "states['c']", "got (5,)"),
    "learnable missing": (ValueError, "learnables", "model 'plif' has learnable parameters ('w',), got 0 value(s)"),
    "learnables a tensor": (TypeError, "learnables", "a tuple of tensors ('w',), got a tensor of shape ()"),
    "learnable not a tensor": (TypeError, "learnables['w']", "got float 0.0"),
    "learnable two elements": (TypeError, "learnables['w']", "shape (2,)"),
    "learnable integer": (TypeError, "learnables['w']", "dtype torch.int64"),
    "learnable device": (TypeError, "learnables['w']", "a tensor on cpu like x_seq, got one on meta"),
    "learnable for lif": (ValueError, "learnables", "model 'lif' has learnable parameters (), got 1 value(s)"),
    "single x integer": (TypeError, "x", "x: expected a floating-point tensor, got torch.int64"),
    "single state shape": (ValueError, "states['v']", "expected shape (2, 5) (the shape of x), got (5,)"),
    "single state dtype": (TypeError, "states['v']", "like x, got torch.float16"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_every_error_names_its_argument(name: str) -> None:
    args, single = _case(name)
    error, argument, fragment = ERRORS[name]
    with pytest.raises(error) as caught:
        check_kernel_arguments(**args, single_step=single)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    message = str(caught.value)
    assert message.startswith(f"{argument}: "), message
    assert fragment in message, message


def test_messages_do_not_print_tensor_values() -> None:
    args = good("plif")
    args["learnables"] = (torch.full((50,), 123456.0),)
    with pytest.raises(TypeError) as caught:
        check_kernel_arguments(**args)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    assert "123456" not in str(caught.value) and "(50,)" in str(caught.value)


def test_checks_in_the_documented_order() -> None:
    """Several bad arguments: the config first, then x_seq, the states, the learnables."""
    x_bad, v0_bad = torch.zeros(3, 4, dtype=torch.int64), torch.zeros(7)
    with pytest.raises(TypeError, match=re.escape("config:")):
        check_kernel_arguments(x_bad, (v0_bad,), None, ())
    with pytest.raises(TypeError, match=re.escape("x_seq:")):
        check_kernel_arguments(x_bad, (v0_bad,), config(), (torch.zeros(()),))
    with pytest.raises(ValueError, match=re.escape("states['v']:")):
        check_kernel_arguments(torch.zeros(3, 4), (v0_bad,), config("plif"), ())


def test_works_on_tensors_without_storage_and_reads_no_values() -> None:
    """Meta tensors (no data): the checks look at metadata only, so they never synchronise a device."""
    check_kernel_arguments(torch.zeros(3, 4, device=META), (torch.zeros(4, device=META),), config("plif"),
                           (torch.zeros((), device=META),))


def test_traces_without_graph_breaks() -> None:
    """Kernels call the checks inside ``torch.compile`` regions (the Triton backend with fullgraph)."""
    dynamo = pytest.importorskip("torch._dynamo")
    cfg = config("plif")

    def checked(x: torch.Tensor, v0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        check_kernel_arguments(x, (v0,), cfg, (w,))
        return x.sum(0) + v0 * w

    explanation = dynamo.explain(checked)(torch.ones(3, 4), torch.ones(4), torch.zeros(()))
    assert explanation.graph_break_count == 0

"""snn.kernels.check_kernel_arguments: every error path, and what it must accept."""

from __future__ import annotations

import re

import pytest
import torch

from snn import kernels
from snn.kernels import NeuronConfig, SurrogateSpec, check_kernel_arguments

META = torch.device("meta")
SIGMOID = SurrogateSpec("Sigmoid", (("alpha", 4.0),))


def config(kind: str = "lif") -> NeuronConfig:
    return NeuronConfig(kind, 1.0, 0.0, False, True, 2.0 if kind == "lif" else None, SIGMOID)


def good(kind: str = "lif", steps: int = 3, shape: tuple[int, ...] = (2, 5)) -> dict[str, object]:
    """Valid keyword arguments of one call."""
    return {
        "kind": kind,
        "x_seq": torch.zeros(steps, *shape),
        "v0": torch.zeros(shape),
        "config": config(kind),
        "w": torch.zeros(()) if kind == "plif" else None,
    }


def test_is_public() -> None:
    assert "check_kernel_arguments" in kernels.__all__


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_accepts_valid_calls(kind: str) -> None:
    check_kernel_arguments(**good(kind))  # type: ignore[arg-type]
    check_kernel_arguments(**good(kind, steps=1, shape=()))  # type: ignore[arg-type]  # T = 1, scalar neurons
    args = good(kind)
    x = torch.zeros(5, 2, 3).transpose(0, 2)  # [3, 2, 5], not contiguous
    check_kernel_arguments(kind, x, args["v0"], args["config"], args["w"])
    for dtype in (torch.float16, torch.bfloat16, torch.float64):  # backend dtypes are not the contract's business
        check_kernel_arguments(kind, torch.zeros(2, 4, dtype=dtype), torch.zeros(4, dtype=dtype), config(kind),
                               torch.zeros(1, dtype=torch.float64) if kind == "plif" else None)
    single = good(kind)
    check_kernel_arguments(kind, torch.zeros(2, 5), torch.zeros(2, 5), single["config"], single["w"], single_step=True)
    check_kernel_arguments(kind, torch.tensor(0.5), torch.tensor(0.0), single["config"], single["w"], single_step=True)


def _case(name: str) -> tuple[dict[str, object], bool]:
    """``(arguments, single_step)`` of one bad call."""
    args = good("lif")
    plif = good("plif")
    single = False
    if name == "kind":
        args["kind"] = "srm"
    elif name == "config type":
        args["config"] = {"kind": "lif"}
    elif name == "config kind":
        args["kind"] = "if"
    elif name == "x_seq not a tensor":
        args["x_seq"] = [[0.0] * 10] * 3
    elif name == "x_seq integer":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.int32)
        args["v0"] = torch.zeros(2, 5, dtype=torch.int32)
    elif name == "x_seq bool":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.bool)
    elif name == "x_seq complex":
        args["x_seq"] = torch.zeros(3, 2, 5, dtype=torch.complex64)
    elif name == "x_seq rank 0":
        args["x_seq"] = torch.tensor(0.5)
        args["v0"] = torch.tensor(0.0)
    elif name == "x_seq empty":
        args["x_seq"] = torch.zeros(0, 2, 5)
    elif name == "v0 not a tensor":
        args["v0"] = 0.0
    elif name == "v0 shape":
        args["v0"] = torch.zeros(2, 6)
    elif name == "v0 shape of x_seq":
        args["v0"] = torch.zeros(3, 2, 5)
    elif name == "v0 dtype":
        args["v0"] = torch.zeros(2, 5, dtype=torch.float64)
    elif name == "v0 device":
        args["v0"] = torch.zeros(2, 5, device=META)
    elif name == "w missing":
        args, plif["w"] = plif, None
    elif name == "w not a tensor":
        args, plif["w"] = plif, 0.0
    elif name == "w two elements":
        args, plif["w"] = plif, torch.zeros(2)
    elif name == "w integer":
        args, plif["w"] = plif, torch.zeros((), dtype=torch.int64)
    elif name == "w device":
        args, plif["w"] = plif, torch.zeros((), device=META)
    elif name == "w for lif":
        args["w"] = torch.zeros(())
    elif name == "w for if":
        args = good("if")
        args["w"] = torch.zeros(())
    elif name == "single x integer":
        args["x_seq"] = torch.zeros(2, 5, dtype=torch.int64)
        args["v0"] = torch.zeros(2, 5)
        single = True
    elif name == "single v0 shape":
        args["x_seq"] = torch.zeros(2, 5)
        args["v0"] = torch.zeros(5)
        single = True
    elif name == "single v0 dtype":
        args["x_seq"] = torch.zeros(2, 5)
        args["v0"] = torch.zeros(2, 5, dtype=torch.float16)
        single = True
    else:  # pragma: no cover
        raise AssertionError(name)
    return args, single


#: case -> (error type, the argument the message must name, a fragment it must contain)
ERRORS: dict[str, tuple[type[Exception], str, str]] = {
    "kind": (ValueError, "kind", "'srm'"),
    "config type": (TypeError, "config", "NeuronConfig, got dict"),
    "config kind": (ValueError, "config.kind", "this is the 'if' kernel, got a config of kind 'lif'"),
    "x_seq not a tensor": (TypeError, "x_seq", "floating-point tensor, got list"),
    "x_seq integer": (TypeError, "x_seq", "got torch.int32"),
    "x_seq bool": (TypeError, "x_seq", "got torch.bool"),
    "x_seq complex": (TypeError, "x_seq", "got torch.complex64"),
    "x_seq rank 0": (ValueError, "x_seq", "T >= 1, got ()"),
    "x_seq empty": (ValueError, "x_seq", "T >= 1, got (0, 2, 5)"),
    "v0 not a tensor": (TypeError, "v0", "a tensor, got float"),
    "v0 shape": (ValueError, "v0", "expected shape (2, 5) (one step of x_seq), got (2, 6)"),
    "v0 shape of x_seq": (ValueError, "v0", "got (3, 2, 5)"),
    "v0 dtype": (TypeError, "v0", "dtype torch.float32 on cpu like x_seq, got torch.float64 on cpu"),
    "v0 device": (TypeError, "v0", "got torch.float32 on meta"),
    "w missing": (TypeError, "w", "PLIF neuron (decay = sigmoid(w)), got None"),
    "w not a tensor": (TypeError, "w", "got float 0.0"),
    "w two elements": (TypeError, "w", "shape (2,)"),
    "w integer": (TypeError, "w", "dtype torch.int64"),
    "w device": (TypeError, "w", "a tensor on cpu like x_seq, got one on meta"),
    "w for lif": (TypeError, "w", "only PLIF neurons take a decay parameter, got one for kind 'lif'"),
    "w for if": (TypeError, "w", "for kind 'if'"),
    "single x integer": (TypeError, "x", "x: expected a floating-point tensor, got torch.int64"),
    "single v0 shape": (ValueError, "v0", "expected shape (2, 5) (the shape of x), got (5,)"),
    "single v0 dtype": (TypeError, "v0", "like x, got torch.float16"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_every_error_names_its_argument(name: str) -> None:
    args, single = _case(name)
    error, argument, fragment = ERRORS[name]
    with pytest.raises(error) as caught:
        check_kernel_arguments(**args, single_step=single)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{argument}: "), message
    assert fragment in message, message


def test_messages_do_not_print_tensor_values() -> None:
    args = good("plif")
    args["w"] = torch.full((50,), 123456.0)
    with pytest.raises(TypeError) as caught:
        check_kernel_arguments(**args)  # type: ignore[arg-type]
    assert "123456" not in str(caught.value) and "(50,)" in str(caught.value)


def test_checks_in_the_documented_order() -> None:
    """Several bad arguments: the config is reported before the tensors, x_seq before v0, v0 before w."""
    x_bad, v0_bad = torch.zeros(3, 4, dtype=torch.int64), torch.zeros(7)
    with pytest.raises(TypeError, match=re.escape("config:")):
        check_kernel_arguments("lif", x_bad, v0_bad, None, None)
    with pytest.raises(TypeError, match=re.escape("x_seq:")):
        check_kernel_arguments("lif", x_bad, v0_bad, config(), torch.zeros(()))
    with pytest.raises(ValueError, match=re.escape("v0:")):
        check_kernel_arguments("plif", torch.zeros(3, 4), v0_bad, config("plif"), None)


def test_works_on_tensors_without_storage_and_reads_no_values() -> None:
    """Meta tensors (no data): the checks look at metadata only, so they never synchronise a device."""
    check_kernel_arguments("plif", torch.zeros(3, 4, device=META), torch.zeros(4, device=META), config("plif"),
                           torch.zeros((), device=META))


def test_traces_without_graph_breaks() -> None:
    """Kernels call the checks inside ``torch.compile`` regions (the Triton backend with fullgraph)."""
    dynamo = pytest.importorskip("torch._dynamo")
    cfg = config("plif")

    def checked(x: torch.Tensor, v0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        check_kernel_arguments("plif", x, v0, cfg, w)
        return x.sum(0) + v0 * w

    explanation = dynamo.explain(checked)(torch.ones(3, 4), torch.ones(4), torch.zeros(()))
    assert explanation.graph_break_count == 0

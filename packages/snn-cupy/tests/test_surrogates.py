"""The surrogate derivatives emitted into CUDA C, evaluated on the CPU against the torch derivative.

Each claimed surrogate's device function (exactly the text the backward kernels contain) is
compiled by the host C++ compiler with ``math.h`` and evaluated at float32 points, NaN and
infinities included; the torch derivative :func:`snn.surrogate.derivative_function` is evaluated
at the same points (a NaN input gives NaN exactly where torch's does: ``fminf``/``fmaxf`` would
not, hence the rewrite of ``minimum``/``maximum`` in :mod:`snn_cupy._lowering`).
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import pytest
import torch

import snn.plugins
from snn.surrogate import CLOSED_FORM_SURROGATES, SURROGATES, derivative_function
from snn_cupy.sources import surrogate_body
from snn_cupy.templates import surrogate_function


def claimed_surrogates() -> tuple[str, ...]:
    return snn.plugins.get_registry().backend("cupy").claimed_surrogates()

#: Non-default parameters per class (in addition to the defaults).
OTHER_PARAMETERS: dict[str, dict[str, float]] = {
    "Sigmoid": {"alpha": 2.5},
    "ATan": {"alpha": 3.3},
    "PiecewiseQuadratic": {"alpha": 1.7},
    "PiecewiseExp": {"alpha": 0.8},
    "SoftSign": {"alpha": 1.3},
    "SuperSpike": {"alpha": 2.0},
    "Erf": {"alpha": 1.5},
    "NonzeroSignLogAbs": {"alpha": 2.0},
    "PiecewiseLeakyReLU": {"w": 0.5, "c": 0.05},
    "SquarewaveFourierSeries": {"n": 4, "T_period": 6.0},
    "S2NN": {"alpha": 3.0, "beta": 0.5},
    "QPseudoSpike": {"alpha": 2.7},
    "LeakyKReLU": {"leak": 0.1, "k": 0.9},
    "FakeNumericalGradient": {"alpha": 0.5},
    "LogTailedReLU": {"alpha": 0.02},
    "Rect": {"alpha": 0.7},
}


def _specs() -> list[tuple[str, Any]]:
    specs = []
    for name in claimed_surrogates():
        cls = SURROGATES[name]
        specs.append((f"{name}-default", cls().spec))
        if name in OTHER_PARAMETERS:
            specs.append((f"{name}-other", cls(**OTHER_PARAMETERS[name]).spec))
    return specs


SPECS = _specs()


def test_claims_every_closed_form_surrogate() -> None:
    assert claimed_surrogates() == tuple(CLOSED_FORM_SURROGATES)
    assert len(claimed_surrogates()) >= 15
    assert set(OTHER_PARAMETERS) | {"DeterministicPass"} >= set(claimed_surrogates())


@pytest.fixture(scope="module")
def evaluators(build_host: Any) -> dict[str, Any]:
    code = []
    for index, (_, spec) in enumerate(SPECS):
        name, function = surrogate_function(surrogate_body(spec))
        code.append(function)
        code.append(f'extern "C" float host_surrogate_{index}(float x) {{ return {name}(x); }}\n')
    host = build_host([], extra="".join(code))
    out = {}
    for index, (label, _) in enumerate(SPECS):
        function = host.function(f"host_surrogate_{index}")
        function.restype = ctypes.c_float
        function.argtypes = [ctypes.c_float]
        out[label] = function
    return out


def _points(spec: Any) -> torch.Tensor:
    grid = torch.linspace(-3.0, 3.0, 1201, dtype=torch.float64)
    special = [0.0, -0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0]
    for _, value in spec.params:  # breakpoints such as |x| = w, 1/alpha, 0.5/alpha
        for candidate in (value, 1.0 / value if value else 0.0, 0.5 / value if value else 0.0):
            special += [candidate, -candidate]
    return torch.cat([grid, torch.tensor(special, dtype=torch.float64)]).float()


@pytest.mark.parametrize(("label", "spec"), SPECS, ids=[label for label, _ in SPECS])
def test_emitted_derivative_matches_torch(evaluators: dict[str, Any], label: str, spec: Any) -> None:
    x = _points(spec)
    expected = derivative_function(spec)(x).double()
    actual = torch.tensor([evaluators[label](float(v)) for v in x.tolist()], dtype=torch.float64)
    assert torch.isfinite(actual).all(), f"{label}: non-finite emitted derivative"
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 3e38, -3e38])
    want = derivative_function(spec)(special).double()
    got = torch.tensor([evaluators[label](float(v)) for v in special.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, equal_nan=True,
                               msg=lambda m: f"{label} at NaN/inf/huge: {got.tolist()} vs {want.tolist()}: {m}")
    bad = ~torch.isclose(actual, expected, rtol=1e-5, atol=1e-7)
    assert not bad.any(), (
        f"{label}: emitted CUDA derivative differs from torch at x={x[bad][:5].tolist()}: "
        f"{actual[bad][:5].tolist()} vs {expected[bad][:5].tolist()}"
    )


def test_rendered_body_uses_only_the_input_variable() -> None:
    for label, spec in SPECS:
        body = surrogate_body(spec)
        identifiers = set(re.findall(r"\b[A-Za-z_]\w*\b", re.sub(r"0x[0-9a-fA-Fp.+-]+f", "", body)))
        assert identifiers <= {"x", "expf", "logf", "fabsf", "sqrtf", "cosf", "fminf", "fmaxf", "powf"}, (
            f"{label}: unexpected identifiers {identifiers} in {body}"
        )

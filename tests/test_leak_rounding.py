"""LIF and PLIF round their leak as SpikingJelly does, so spikes agree at the threshold too.

SpikingJelly charges LIF with ``v + (x - (v - vr)) / tau`` and PLIF with
``v + (x - (v - vr)) * sigmoid(w)``, each operation rounded on its own. Multiplying by
``1 / tau`` instead, or fusing PLIF's charge into one ``torch.lerp`` (one rounding), moved about
one potential in ten of those within two units in the last place of the threshold across it
(tau = 3). Inputs here are built to land within two units of the threshold, and every backend
installed here that runs LIF and PLIF in float32 is compared with a plain float32 loop of
SpikingJelly's formulas.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn import neuron
from snn.plugins import get_registry


def _sj_charge(v: torch.Tensor, x: torch.Tensor, vr: float, decay_input: bool, tau: float | None,
               k: torch.Tensor | None) -> torch.Tensor:
    """SpikingJelly 2.0.0's charge, in its order of operations (tau: LIF's division; k: PLIF's factor)."""
    if decay_input:
        d = x - (v - vr)
        return v + (d / tau if tau is not None else d * k)
    d = v - vr
    return v - (d / tau if tau is not None else d * k) + x


def _near_threshold_inputs(n: int, tau: float, vr: float, decay_input: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    v0 = torch.rand(n, generator=generator) * 0.9
    x = (1.0 - v0) * tau + v0 - vr if decay_input else (1.0 - v0) + (v0 - vr) / tau
    step = torch.randint(-2, 3, (n,), generator=generator).float()
    return v0, torch.nextafter(x, x + step)


def _backends() -> list[str]:
    registry = get_registry()
    names = []
    for name in sorted(registry.backends):
        info = registry.backend(name)
        if torch.float32 in info.dtypes and info.serves_device("cpu") and info.unavailable_reason() is None:
            names.append(name)
    return names


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("kind", ["lif", "plif"])
@pytest.mark.parametrize("decay_input, v_reset", [(True, 0.0), (True, -0.3), (False, 0.0), (False, -0.3)])
def test_spikes_at_the_threshold_match_spikingjelly_rounding(backend: str, kind: str, decay_input: bool, v_reset: float) -> None:
    tau = 3.0
    v0, x = _near_threshold_inputs(4096, tau, v_reset, decay_input)
    if kind == "lif":
        layer = neuron.LIFNode(tau=tau, decay_input=decay_input, v_reset=v_reset, step_mode="m")
        expected_h = _sj_charge(v0, x, v_reset, decay_input, tau, None)
    else:
        layer = neuron.ParametricLIFNode(init_tau=tau, decay_input=decay_input, v_reset=v_reset, step_mode="m")
        expected_h = _sj_charge(v0, x, v_reset, decay_input, None, layer.w.detach().sigmoid())
    if backend not in layer.supported_backends:
        pytest.skip(f"backend {backend!r} does not run {kind}")
    layer.backend = backend
    layer.v = v0.clone()
    with torch.no_grad():
        spikes = layer(x[None])[0]
    expected = (expected_h >= 1.0).float()
    near = (expected_h - 1.0).abs() <= 4 * torch.finfo(torch.float32).eps
    assert int(near.sum()) > 1000  # the inputs do test the rounding at the threshold
    assert torch.equal(spikes, expected), f"{int((spikes != expected).sum())} of {spikes.numel()} spikes differ"
    assert math.isclose(float(spikes.mean()), float(expected.mean()))

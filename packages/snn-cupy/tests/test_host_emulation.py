"""The generated kernels, run on the CPU through the host emulation, against a plain PyTorch loop.

The kernel text is compiled verbatim with the system C++ compiler (see ``conftest.py``); only
the PTX float16 conversions are swapped for ``_Float16`` casts. The reference is an autograd loop
in float64 written here from the contract's equations, using the snn surrogate modules for the
spike function. Spikes must be equal; potentials and gradients agree within 1e-5 (float32) and
1e-2 (float16, inputs rounded to float16 first).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from snn.kernels import NeuronConfig
from snn.surrogate import SURROGATES
from snn_cupy.sources import backward_kernel_source, forward_kernel_source

RESETS: dict[str, float | None] = {"hard": 0.0, "hardneg": -0.3, "soft": None}
DTYPES = {"f32": torch.float32, "f16": torch.float16}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def _configs() -> list[tuple[str, str, bool, bool, str]]:
    cases = []
    for kind, reset, detach, decay_input, dtype in itertools.product(
        ("if", "lif", "plif"), RESETS, (False, True), (False, True), DTYPES
    ):
        if kind == "if" and decay_input:
            continue
        cases.append((kind, reset, detach, decay_input, dtype))
    return cases


CASES = _configs()


def _config(kind: str, reset: str, detach: bool, decay_input: bool, surrogate: str = "Sigmoid",
            v_threshold: float = 1.0, tau: float = 2.0) -> NeuronConfig:
    return NeuronConfig(
        kind, v_threshold, RESETS[reset], detach, decay_input if kind != "if" else False,
        tau if kind == "lif" else None, SURROGATES[surrogate]().spec,
    )


@pytest.fixture(scope="module")
def host(build_host: Any) -> Any:
    """Every source of the matrix plus a few extra configurations, in one CPU library."""
    sources = []
    for kind, reset, detach, decay_input, tag in CASES:
        config = _config(kind, reset, detach, decay_input)
        dtype = DTYPES[tag]
        sources += [
            forward_kernel_source(config, dtype, True),
            forward_kernel_source(config, dtype, False),
            backward_kernel_source(config, dtype),
        ]
    for config in _extra_configs():
        sources += [
            forward_kernel_source(config, torch.float32, True),
            forward_kernel_source(config, torch.float32, False),
            backward_kernel_source(config, torch.float32),
        ]
    unique = {s.name: s for s in sources}
    return build_host(unique.values())


def _extra_configs() -> list[NeuronConfig]:
    return [
        _config("lif", "hardneg", False, True, "ATan", v_threshold=0.7, tau=3.7),
        _config("plif", "soft", False, False, "PiecewiseLeakyReLU", v_threshold=0.55),
        _config("if", "soft", False, False, "QPseudoSpike", v_threshold=1.3),
    ]


class _Reference:
    """The contract's equations as a float64 autograd loop."""

    def __init__(self, config: NeuronConfig) -> None:
        self.config = config
        self.surrogate = SURROGATES[config.surrogate.name](**config.surrogate.kwargs)

    def run(self, x: torch.Tensor, v0: torch.Tensor, w: torch.Tensor | None) -> tuple[Any, Any, Any]:
        c = self.config
        vr = c.reset_potential
        v = v0
        spikes, potentials = [], []
        for t in range(x.shape[0]):
            if c.kind == "if":
                h = v + x[t]
            else:
                k = 1.0 / c.tau if c.kind == "lif" else torch.sigmoid(w)
                h = v + (x[t] - (v - vr)) * k if c.decay_input else v - (v - vr) * k + x[t]
            s = self.surrogate(h - c.v_threshold)
            sd = s.detach() if c.detach_reset else s
            v = sd * vr + (1.0 - sd) * h if c.hard_reset else h - sd * c.v_threshold
            spikes.append(s)
            potentials.append(v)
        return torch.stack(spikes), v, torch.stack(potentials)


def _inputs(seed: int, steps: int, n: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        values = torch.randn(shape, generator=gen, dtype=torch.float64) * scale + shift
        return values.to(dtype).to(torch.float64)  # exactly representable in the storage dtype

    return {
        "x": draw(steps, n, scale=0.9, shift=0.45),
        "v0": draw(n, scale=0.4, shift=0.1),
        "w": draw(scale=0.3),
        "g_spikes": draw(steps, n),
        "g_v_last": draw(n),
        "g_v_seq": draw(steps, n),
    }


def _run_kernels(host: Any, config: NeuronConfig, dtype: torch.dtype, data: dict[str, torch.Tensor],
                 vec: int) -> dict[str, torch.Tensor]:
    steps, n = data["x"].shape
    units = n // vec
    store = {k: v.to(dtype).contiguous() for k, v in data.items() if k != "w"}
    k = torch.sigmoid(data["w"]).to(torch.float32).reshape(()) if config.kind == "plif" else None
    out = {name: torch.full((steps, n), float("nan"), dtype=dtype) for name in ("spikes", "h", "v_seq")}
    out["v_last"] = torch.full((n,), float("nan"), dtype=dtype)
    host.launch(forward_kernel_source(config, dtype, True), vec, units,
                (store["x"], store["v0"], k, out["spikes"], out["h"], out["v_seq"], out["v_last"]), steps)
    infer = {name: torch.full_like(out["spikes"], float("nan")) for name in ("spikes", "v_seq")}
    infer["v_last"] = torch.full_like(out["v_last"], float("nan"))
    host.launch(forward_kernel_source(config, dtype, False), vec, units,
                (store["x"], store["v0"], k, infer["spikes"], None, infer["v_seq"], infer["v_last"]), steps)
    for name in ("spikes", "v_seq", "v_last"):
        assert torch.equal(infer[name], out[name]), f"inference kernel differs from training kernel in {name}"
    grad_x = torch.full((steps, n), float("nan"), dtype=dtype)
    grad_v0 = torch.full((n,), float("nan"), dtype=dtype)
    blocks = (units + host.block_size - 1) // host.block_size
    partial = torch.full((blocks,), float("nan"), dtype=torch.float32)
    host.launch(backward_kernel_source(config, dtype), vec, units,
                (store["g_spikes"], store["g_v_seq"], store["g_v_last"], out["h"], store["v0"], k,
                 grad_x, grad_v0, partial), steps)
    out.update(grad_x=grad_x, grad_v0=grad_v0)
    if k is not None:
        out["grad_w"] = partial.double().sum() * float(k) * (1.0 - float(k))
    return out


def _reference(config: NeuronConfig, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    x = data["x"].clone().requires_grad_(True)
    v0 = data["v0"].clone().requires_grad_(True)
    w = data["w"].clone().requires_grad_(True) if config.kind == "plif" else None
    spikes, v_last, v_seq = _Reference(config).run(x, v0, w)
    loss = (spikes * data["g_spikes"]).sum() + (v_last * data["g_v_last"]).sum() + (v_seq * data["g_v_seq"]).sum()
    inputs = [x, v0] + ([w] if w is not None else [])
    grads = torch.autograd.grad(loss, inputs)
    out = {"spikes": spikes.detach(), "v_last": v_last.detach(), "v_seq": v_seq.detach(),
           "grad_x": grads[0], "grad_v0": grads[1]}
    if w is not None:
        out["grad_w"] = grads[2]
    return out


def _compare(case: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    tol = TOLERANCE[dtype]
    assert torch.equal(got["spikes"].double(), want["spikes"]), f"{case}: spikes differ"
    for name, expected in want.items():
        if name == "spikes":
            continue
        actual = got[name].double()
        assert torch.isfinite(actual).all(), f"{case}: {name} has unwritten or non-finite entries"
        assert torch.allclose(actual, expected, rtol=tol, atol=tol), (
            f"{case}: {name} differs: max |diff| {(actual - expected).abs().max().item():.3g}"
        )


@pytest.mark.parametrize(("kind", "reset", "detach", "decay_input", "tag"), CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_kernels_match_reference_loop(host: Any, kind: str, reset: str, detach: bool, decay_input: bool,
                                      tag: str) -> None:
    dtype = DTYPES[tag]
    config = _config(kind, reset, detach, decay_input)
    vecs = (1, 2) if dtype == torch.float16 else (1,)
    for steps, n in ((6, 14), (1, 14), (5, 13)):
        data = _inputs(hash((kind, reset, detach, decay_input, steps, n)) % 2**31, steps, n, dtype)
        want = _reference(config, data)
        results = []
        for vec in vecs:
            if n % vec:
                continue
            got = _run_kernels(host, config, dtype, data, vec)
            _compare(f"{kind}/{reset}/detach={detach}/decay_input={decay_input}/{tag}/T={steps}/N={n}/vec={vec}",
                     got, want, dtype)
            results.append(got)
        if len(results) == 2:  # the pair layout computes what the single layout computes
            for name in results[0]:
                if name == "grad_w":  # summed in another order (other blocks)
                    assert torch.allclose(results[0][name], results[1][name], rtol=1e-5, atol=1e-6)
                else:
                    assert torch.equal(results[0][name], results[1][name]), f"v1 and v2 layouts differ in {name}"


@pytest.mark.parametrize("index", range(3))
def test_non_default_parameters(host: Any, index: int) -> None:
    config = _extra_configs()[index]
    data = _inputs(100 + index, 7, 11, torch.float32)
    _compare(str(config), _run_kernels(host, config, torch.float32, data, 1), _reference(config, data), torch.float32)


@pytest.mark.parametrize(
    ("v_threshold", "x", "spike"),
    [(1.0, 1.0 - 2.0**-11, 0.0), (1.0 + 2.0**-12, 1.0, 1.0)],
    ids=["below-rounds-up", "above-rounds-down"],
)
def test_saved_h_keeps_spikes_in_float16(host_keep_side: Any, v_threshold: float, x: float, spike: float) -> None:
    """Charged potentials within half a float16 ulp of the threshold: backward sees forward's spikes.

    ``h = 2**-12 + x`` is ``1 - 2**-12`` (below a threshold of 1) or ``1 + 2**-12`` (exactly at a
    threshold of ``1 + 2**-12``); plain float16 rounding takes both to 1.0, across the threshold.
    With a hard reset, ``detach_reset`` and ``dL/dv_last = 1`` the input gradient is ``1 - s``.
    """
    config = _config("if", "hard", True, False, v_threshold=v_threshold)
    n = 4
    data = {
        "x": torch.full((1, n), x, dtype=torch.float64), "v0": torch.full((n,), 2.0**-12, dtype=torch.float64),
        "w": torch.zeros((), dtype=torch.float64), "g_spikes": torch.zeros(1, n, dtype=torch.float64),
        "g_v_last": torch.ones(n, dtype=torch.float64), "g_v_seq": torch.zeros(1, n, dtype=torch.float64),
    }
    assert all(torch.equal(t.half().double(), t) for t in data.values())
    for vec in (1, 2):
        got = _run_kernels(host_keep_side, config, torch.float16, data, vec)
        assert got["spikes"][0].tolist() == [spike] * n
        assert torch.equal(got["grad_x"][0].double(), 1.0 - got["spikes"][0].double())


@pytest.fixture(scope="module")
def host_keep_side(build_host: Any) -> Any:
    sources = []
    for v_threshold in (1.0, 1.0 + 2.0**-12):
        config = _config("if", "hard", True, False, v_threshold=v_threshold)
        sources += [
            forward_kernel_source(config, torch.float16, True),
            forward_kernel_source(config, torch.float16, False),
            backward_kernel_source(config, torch.float16),
        ]
    return build_host(sources)


# --- non-finite inputs: the kernels give exactly what the torch reference backend gives -------

NAN, INF = float("nan"), float("inf")

#: Which upstream gradients a backward pass receives (the others are ``None``).
GRADIENT_SETS = {
    "all": ("spikes", "v_last", "v_seq"),
    "spikes": ("spikes",),
    "v_seq": ("v_seq",),
    "v_last": ("v_last",),
}


def _nonfinite_data(seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``[T=4, N=12]`` inputs on a 1/8 grid with NaN, +inf and -inf in ``x`` (columns 0-5)
    and ``v0`` (columns 6-8); columns 9-11 stay finite. PLIF's ``w = 0`` makes the decay 1/2,
    so every finite value is exact in float16 and no rounding can separate the two backends."""
    gen = torch.Generator().manual_seed(seed)

    def grid(*shape: int, low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=gen).to(dtype) / 8

    x = grid(4, 12, low=-6, high=14)
    x[0, 0], x[2, 1], x[0, 2], x[1, 3], x[0, 4], x[3, 5] = NAN, NAN, INF, INF, -INF, -INF
    v0 = grid(12, low=-4, high=8)
    v0[6], v0[7], v0[8] = NAN, INF, -INF
    return {
        "x": x, "v0": v0, "w": torch.zeros((), dtype=torch.float32),
        "spikes": grid(4, 12, low=-8, high=8), "v_last": grid(12, low=-8, high=8),
        "v_seq": grid(4, 12, low=-8, high=8),
    }


def _torch_reference(config: NeuronConfig, data: dict[str, torch.Tensor],
                     given: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The ``"torch"`` backend's outputs and input gradients (upstream gradients ``given``)."""
    from snn.backends import torch as torch_backend

    kernel = getattr(torch_backend, f"{config.kind}_multi_step")
    x = data["x"].clone().requires_grad_(True)
    v0 = data["v0"].clone().requires_grad_(True)
    w = data["w"].clone().requires_grad_(True) if config.kind == "plif" else None
    spikes, v_last, v_seq = kernel(x, v0, config, w=w, store_v_seq=True)
    outputs = {"spikes": spikes, "v_last": v_last, "v_seq": v_seq}
    grad_x, grad_v0 = torch.autograd.grad([outputs[name] for name in given], [x, v0],
                                          [data[name] for name in given])
    return {"spikes": spikes.detach(), "v_last": v_last.detach(), "v_seq": v_seq.detach(),
            "grad_x": grad_x, "grad_v0": grad_v0}


def _host_run(host: Any, config: NeuronConfig, data: dict[str, torch.Tensor], given: tuple[str, ...],
              vec: int) -> dict[str, torch.Tensor]:
    """Forward (training) and backward kernels on ``data``; absent upstream gradients are null."""
    dtype = data["x"].dtype
    steps, n = data["x"].shape
    units = n // vec
    k = torch.sigmoid(data["w"]).reshape(()) if config.kind == "plif" else None
    out = {name: torch.empty((steps, n), dtype=dtype) for name in ("spikes", "h", "v_seq")}
    out["v_last"] = torch.empty((n,), dtype=dtype)
    host.launch(forward_kernel_source(config, dtype, True), vec, units,
                (data["x"], data["v0"], k, out["spikes"], out["h"], out["v_seq"], out["v_last"]), steps)
    upstream = [data[name] if name in given else None for name in ("spikes", "v_seq", "v_last")]
    out["grad_x"] = torch.empty((steps, n), dtype=dtype)
    out["grad_v0"] = torch.empty((n,), dtype=dtype)
    partial = torch.empty(((units + host.block_size - 1) // host.block_size,), dtype=torch.float32)
    host.launch(backward_kernel_source(config, dtype), vec, units,
                (*upstream, out["h"], data["v0"], k, out["grad_x"], out["grad_v0"], partial), steps)
    return out


@pytest.mark.parametrize(("kind", "reset", "detach", "decay_input", "tag"), CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_nonfinite_inputs_match_the_torch_backend(host: Any, kind: str, reset: str, detach: bool,
                                                  decay_input: bool, tag: str) -> None:
    """NaN, +inf and -inf in ``x`` and ``v0``: spikes and potentials equal torch's bit for bit
    (NaN equal to NaN), gradients equal in every NaN / inf position and close elsewhere, for every
    combination of upstream gradients (absent ones must not turn ``0 * inf`` into NaN)."""
    dtype = DTYPES[tag]
    config = _config(kind, reset, detach, decay_input)
    data = _nonfinite_data(hash((kind, reset, detach, decay_input)) % 2**31, dtype)
    tol = TOLERANCE[dtype]
    for label, given in GRADIENT_SETS.items():
        want = _torch_reference(config, data, given)
        assert want["v_seq"].isnan().any() and want["v_seq"].isinf().any()  # the case is non-trivial
        for vec in ((1, 2) if dtype == torch.float16 else (1,)):
            got = _host_run(host, config, data, given, vec)
            case = f"{kind}/{reset}/detach={detach}/decay_input={decay_input}/{tag}/vec={vec}/grads={label}"
            assert torch.equal(got["spikes"], want["spikes"]), f"{case}: spikes differ"
            for name in ("v_seq", "v_last"):
                torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, equal_nan=True,
                                           msg=lambda m, name=name, case=case: f"{case}: {name}: {m}")
            for name in ("grad_x", "grad_v0"):
                assert torch.equal(got[name].isnan(), want[name].isnan()), f"{case}: NaN positions of {name}"
                torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol, equal_nan=True,
                                           msg=lambda m, name=name, case=case: f"{case}: {name}: {m}")

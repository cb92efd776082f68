"""A reusable pytest suite that checks a backend's neuron kernels against the torch reference.

Subclass :class:`BackendConformance` in any test file and name the backend::

    from snn.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mine"

pytest then collects parametrised tests that run the backend's multi-step kernels and the
``"torch"`` kernels on identical inputs and compare spikes (exactly), final and per-step
potentials and the gradients with respect to ``x_seq``, ``v0`` and PLIF's ``w`` (within
``rtol = atol = 1e-5`` in float32 and ``1e-2`` in float16 / bfloat16), over:

- ``test_dynamics``: every neuron kind the backend serves x hard reset (``v_reset`` 0 and
  -0.3) and soft reset x ``detach_reset`` x ``decay_input``, with ``store_v_seq``;
- ``test_surrogates``: every surrogate the backend claims, for every kind, with its default
  parameters (hard and soft reset) and with doubled parameters (where any is non-zero);
- ``test_dtypes``: every dtype the backend claims, for every kind;
- ``test_layouts``: ``T = 1``, an odd size across a 1024 boundary, transposed and strided
  (non-contiguous) inputs, no ``store_v_seq``, inference without gradients, gradients through
  the potentials only, no gradient for ``x_seq``.

Every claimed device that exists here is tested (interpreted / emulated devices included).
When the backend is not installed or its probe reports a reason, the tests skip with it.

Class attributes narrow or widen the matrix: :attr:`devices`, :attr:`dtypes`,
:attr:`surrogates`, :attr:`kinds` (``None`` = all that the backend claims), :attr:`size`,
:attr:`tolerances`; :attr:`plugin` registers a plugin object for the tests (for a plugin that
is not installed through an entry point). :meth:`check_case` runs one case and raises
``AssertionError`` on a mismatch, so the suite can also be driven by hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

__all__ = ["BackendConformance", "ConformanceCase"]

_ALL_KINDS = ("if", "lif", "plif")
_RESETS: dict[str, float | None] = {"hard": 0.0, "hardneg": -0.3, "soft": None}
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ConformanceCase:
    """One comparison of the conformance suite.

    Attributes:
        kind: ``"if"``, ``"lif"`` or ``"plif"``.
        device: device type the tensors live on.
        dtype: dtype of ``x_seq`` and ``v0``.
        surrogate: surrogate class name.
        surrogate_scale: the surrogate's parameters are its defaults times this factor.
        reset: ``"hard"`` (``v_reset=0``), ``"hardneg"`` (``v_reset=-0.3``) or ``"soft"``.
        detach_reset: the config's ``detach_reset``.
        decay_input: the config's ``decay_input`` (LIF / PLIF).
        shape: ``(T, *)`` of ``x_seq``.
        layout: ``"contiguous"``, ``"transposed"`` or ``"strided"`` input memory.
        store_v_seq: request the per-step potentials.
        grads: ``"all"`` (x, v0, w), ``"none"`` (no_grad inference), ``"v_only"`` (the loss uses
            the potentials, not the spikes) or ``"no_x"`` (only ``v0`` requires grad).
        skip: a reason to skip instead of running.
    """

    kind: str
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    surrogate: str = "Sigmoid"
    surrogate_scale: int = 1
    reset: str = "hard"
    detach_reset: bool = False
    decay_input: bool = True
    shape: tuple[int, ...] = (5, 3, 7)
    layout: str = "contiguous"
    store_v_seq: bool = True
    grads: str = "all"
    skip: str | None = None

    @property
    def id(self) -> str:
        """A readable pytest id."""
        if self.skip is not None:
            return "unavailable"
        parts = [
            self.kind, self.device, str(self.dtype).replace("torch.", ""),
            self.surrogate if self.surrogate_scale == 1 else f"{self.surrogate}x{self.surrogate_scale}", self.reset,
            "detach" if self.detach_reset else "nodetach",
        ]
        if self.kind != "if":
            parts.append("decayin" if self.decay_input else "nodecayin")
        parts += ["x".join(map(str, self.shape)), self.layout, "vseq" if self.store_v_seq else "novseq", self.grads]
        return "-".join(parts)


def _device_exists(device: str) -> bool:
    if device == "cpu":
        return True
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def _scalable(name: str) -> bool:
    """Whether doubling the surrogate's default parameters changes any of them."""
    from snn.surrogate import SURROGATES

    return any(value != 0 for value in SURROGATES[name]().params.values())


class BackendConformance:
    """Base class of a backend's conformance tests (see the module docstring).

    Attributes:
        backend: the backend name to test (required).
        devices: device types to test; ``None``: every claimed device that exists here.
        dtypes: dtypes to test; ``None``: every claimed dtype.
        surrogates: surrogate names to test; ``None``: every claimed surrogate.
        kinds: neuron kinds to test; ``None``: every kind with a multi-step kernel.
        size: ``(T, *)`` of the main cases (small: the suite may run under an interpreter).
        large_size: the odd size crossing a block boundary.
        tolerances: ``dtype -> (rtol, atol)`` for potentials and gradients.
        plugin: a plugin object registered with :func:`snn.plugins.temporary_plugin` while the
            suite runs (``None``: use the installed plugins).
        plugin_name: its plugin name.
        seed: seed of the random inputs.
    """

    backend: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...] | None] = None
    dtypes: ClassVar[tuple[torch.dtype, ...] | None] = None
    surrogates: ClassVar[tuple[str, ...] | None] = None
    kinds: ClassVar[tuple[str, ...] | None] = None
    size: ClassVar[tuple[int, ...]] = (5, 3, 7)
    large_size: ClassVar[tuple[int, ...]] = (3, 1031)
    tolerances: ClassVar[dict[torch.dtype, tuple[float, float]]] = {
        torch.float64: (1e-10, 1e-10),
        torch.float32: (1e-5, 1e-5),
        torch.float16: (1e-2, 1e-2),
        torch.bfloat16: (1e-2, 1e-2),
    }
    plugin: ClassVar[Any] = None
    plugin_name: ClassVar[str | None] = None
    seed: ClassVar[int] = 1234

    # -- registry access -------------------------------------------------------------------------

    @contextlib.contextmanager
    def registry(self) -> Iterator[Any]:
        """The registry, with :attr:`plugin` registered for the duration when set."""
        from snn import plugins

        if self.plugin is None:
            yield plugins.get_registry()
        else:
            with plugins.temporary_plugin(self.plugin, name=self.plugin_name) as registry:
                yield registry

    def _unavailable(self, registry: Any) -> str | None:
        from snn.errors import BackendNotFoundError

        if not self.backend:
            return f"{type(self).__name__}.backend is not set"
        try:
            info = registry.backend(self.backend)
        except BackendNotFoundError as exc:
            return str(exc)
        return info.unavailable_reason()

    # -- the matrix ------------------------------------------------------------------------------

    def conformance_cases(self, group: str) -> list[ConformanceCase]:
        """The cases of one test group: ``"dynamics"``, ``"surrogates"``, ``"dtypes"``, ``"layouts"``."""
        with self.registry() as registry:
            reason = self._unavailable(registry)
            if reason is not None:
                return [ConformanceCase("if", skip=f"backend {self.backend!r} unavailable: {reason}")]
            info = registry.backend(self.backend)
            from snn.surrogate import CLOSED_FORM_SURROGATES

            kinds = [k for k in (self.kinds or _ALL_KINDS) if info.serves(k, "multi_step")]
            devices = [d for d in (self.devices or sorted(info.devices | info.emulated_devices)) if _device_exists(d)]
            dtypes = [d for d in (self.dtypes or (torch.float32, torch.float16, torch.bfloat16, torch.float64))
                      if d in info.dtypes]
            surrogates = [s for s in (self.surrogates or CLOSED_FORM_SURROGATES) if s in info.surrogates]
        if not kinds or not devices or not dtypes or not surrogates:
            what = "kinds" if not kinds else "devices here" if not devices else "dtypes" if not dtypes else "surrogates"
            return [ConformanceCase("if", skip=f"backend {self.backend!r}: nothing to test (no {what})")]
        main_dtype = torch.float32 if torch.float32 in dtypes else dtypes[0]
        main_surrogate = "Sigmoid" if "Sigmoid" in surrogates else surrogates[0]
        cases: list[ConformanceCase] = []
        for device in devices:
            base = ConformanceCase("if", device=device, dtype=main_dtype, surrogate=main_surrogate, shape=self.size)
            for kind in kinds:
                one = replace(base, kind=kind)
                if group == "dynamics":
                    for reset in _RESETS:
                        for detach in (False, True):
                            for decay_input in ((True,) if kind == "if" else (True, False)):
                                cases.append(replace(one, reset=reset, detach_reset=detach, decay_input=decay_input))
                elif group == "surrogates":
                    cases += [replace(one, surrogate=s, reset=r) for s in surrogates for r in ("hard", "soft")]
                    cases += [replace(one, surrogate=s, surrogate_scale=2) for s in surrogates if _scalable(s)]
                elif group == "dtypes":
                    cases += [replace(one, dtype=d) for d in dtypes]
                elif group == "layouts":
                    t = self.size[0]
                    cases += [
                        replace(one, shape=(1, *self.size[1:])),
                        replace(one, shape=self.large_size, reset="soft"),
                        replace(one, shape=(t, 7, 3), layout="transposed"),
                        replace(one, shape=(t, 2, 9), layout="strided", reset="hardneg"),
                        replace(one, store_v_seq=False),
                        replace(one, grads="none"),
                        replace(one, grads="v_only", reset="soft"),
                        replace(one, grads="no_x", store_v_seq=False),
                    ]
                else:
                    raise ValueError(f"group: expected dynamics, surrogates, dtypes or layouts, got {group!r}")
        return cases

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """pytest hook: parametrise ``case`` of each ``test_<group>`` method."""
        if "case" not in metafunc.fixturenames:
            return
        group = metafunc.function.__name__.removeprefix("test_")
        cases = self.conformance_cases(group)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    # -- one comparison --------------------------------------------------------------------------

    def make_inputs(self, case: ConformanceCase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Seeded ``(x_seq, v0, w)`` for ``case``: leaves without grad, ``x_seq`` in the case's layout."""
        gen = torch.Generator().manual_seed(self.seed + sum(map(ord, case.id)))
        t, *rest = case.shape
        values = torch.randn(case.shape, generator=gen, dtype=torch.float64) * 0.9 + 0.45
        v0 = torch.rand(tuple(rest), generator=gen, dtype=torch.float64) * 0.8 - 0.3
        w = torch.tensor(0.4 - 0.8 * torch.rand((), generator=gen, dtype=torch.float64).item())
        to: dict[str, Any] = {"dtype": case.dtype, "device": case.device}
        if case.layout == "transposed" and len(rest) >= 2:
            x = torch.empty((t, *reversed(rest)), **to).transpose(1, len(rest))
        elif case.layout == "strided":
            x = torch.empty((t, *rest[:-1], 2 * rest[-1]), **to)[..., ::2]
        else:
            x = torch.empty(case.shape, **to)
        x.copy_(values)
        return x, v0.to(**to), (w.to(**to) if case.kind == "plif" else None)

    def config_for(self, case: ConformanceCase) -> Any:
        """The :class:`~snn.kernels.NeuronConfig` of ``case``."""
        from snn.kernels import NeuronConfig
        from snn.surrogate import SURROGATES

        cls = SURROGATES[case.surrogate]
        params = {name: value * case.surrogate_scale for name, value in cls().params.items()}
        spec = cls(**params).spec
        return NeuronConfig(
            case.kind, 1.0, _RESETS[case.reset], case.detach_reset, case.decay_input,
            2.0 if case.kind == "lif" else None, spec,
        )

    def _run(
        self, kernel: Any, case: ConformanceCase, config: Any,
        x: torch.Tensor, v0: torch.Tensor, w: torch.Tensor | None,
    ) -> dict[str, torch.Tensor | None]:
        # detached aliases of the caller's tensors: a kernel writing into its inputs is noticed
        x, v0 = x.detach(), v0.detach()
        w = w.detach() if w is not None else None
        grads = case.grads
        if grads in ("all", "v_only"):
            x.requires_grad_(True)
        if grads in ("all", "v_only", "no_x"):
            v0.requires_grad_(True)
            if w is not None:
                w.requires_grad_(True)
        with torch.set_grad_enabled(grads != "none"):
            spikes, v_last, v_seq = kernel(x, v0, config, w=w, store_v_seq=case.store_v_seq)
        out: dict[str, torch.Tensor | None] = {"spikes": spikes, "v_last": v_last, "v_seq": v_seq}
        if grads == "none":
            return out
        gen = torch.Generator().manual_seed(self.seed)
        weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t) for t in (spikes, v_last)]
        loss = (v_last * weights[1]).sum()
        if grads != "v_only":
            loss = loss + (spikes * weights[0]).sum()
        if v_seq is not None:
            loss = loss + (v_seq * torch.randn(v_seq.shape, generator=gen, dtype=torch.float64).to(v_seq)).sum()
        inputs = [t for t in (x, v0, w) if t is not None and t.requires_grad]
        found = torch.autograd.grad(loss, inputs, allow_unused=True)
        named = dict(zip([n for n, t in (("x", x), ("v0", v0), ("w", w)) if t is not None and t.requires_grad], found))
        for name in ("x", "v0", "w"):
            out[f"grad_{name}"] = named.get(name)
        return out

    def check_case(self, case: ConformanceCase) -> None:
        """Run ``case`` on the backend and on torch and assert they agree.

        Raises:
            AssertionError: a mismatch (which output, which case, the largest difference).
            pytest.skip.Exception: the case is marked to skip or the backend is unavailable.
        """
        import pytest

        if case.skip is not None:
            pytest.skip(case.skip)
        with self.registry() as registry:
            reason = self._unavailable(registry)
            if reason is not None:
                pytest.skip(f"backend {self.backend!r} unavailable: {reason}")
            kernel = registry.kernel(self.backend, case.kind, "multi_step")
            reference = registry.kernel("torch", case.kind, "multi_step")
            config = self.config_for(case)
            x, v0, w = self.make_inputs(case)
            before = [t.clone() for t in (x, v0, w) if t is not None]
            got = self._run(kernel, case, config, x, v0, w)
            for name, old, new in zip(("x_seq", "v0", "w"), before, (x, v0, w)):
                assert torch.equal(old, new), f"{case.id}: the kernel modified its input {name}"
            want = self._run(reference, case, config, x, v0, w)
        rtol, atol = self.tolerances.get(case.dtype, (1e-2, 1e-2))
        for name, expected in want.items():
            actual = got.get(name)
            if expected is None:
                assert actual is None or name.startswith("grad_"), (
                    f"{case.id}: {name}: expected None (store_v_seq={case.store_v_seq}), got a tensor"
                )
                continue
            assert isinstance(actual, torch.Tensor), f"{case.id}: {name}: expected a tensor, got {actual!r}"
            assert actual.shape == expected.shape, (
                f"{case.id}: {name}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
            )
            if name in ("spikes", "v_last", "v_seq"):
                assert actual.dtype == case.dtype, f"{case.id}: {name}: dtype {actual.dtype}, expected {case.dtype}"
            if name == "spikes":
                if not torch.equal(actual, expected):
                    where = (actual != expected).nonzero()[:5].tolist()
                    raise AssertionError(f"{case.id}: spikes differ from torch at {where}")
                continue
            a, e = actual.double(), expected.double()
            if not torch.allclose(a, e, rtol=rtol, atol=atol):
                diff = (a - e).abs()
                worst = diff.argmax()
                raise AssertionError(
                    f"{case.id}: {name} differs from torch beyond rtol={rtol}, atol={atol}: largest "
                    f"difference {diff.max().item():.3g} ({a.flatten()[worst].item():.6g} vs "
                    f"{e.flatten()[worst].item():.6g}); scale {e.abs().max().item():.3g}"
                )

    # -- the tests -------------------------------------------------------------------------------

    def test_dynamics(self, case: ConformanceCase) -> None:
        """Every kind x reset mode x detach_reset x decay_input."""
        self.check_case(case)

    def test_surrogates(self, case: ConformanceCase) -> None:
        """Every claimed surrogate, for every kind, default and doubled parameters."""
        self.check_case(case)

    def test_dtypes(self, case: ConformanceCase) -> None:
        """Every claimed dtype, for every kind."""
        self.check_case(case)

    def test_layouts(self, case: ConformanceCase) -> None:
        """T = 1, odd sizes, non-contiguous inputs, no v_seq, inference, partial gradients."""
        self.check_case(case)

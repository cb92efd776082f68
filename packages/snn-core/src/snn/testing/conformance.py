"""A reusable pytest suite that checks a backend's neuron kernels against the model descriptions.

Subclass :class:`BackendConformance` in any test file and name the backend::

    from snn.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mine"

pytest then collects parametrised tests that run the backend's kernels and a float64 plain
autograd loop of the same model description (:func:`snn.models.autograd_step`) on identical
inputs, and compare spikes (exactly), final states, state sequences and the gradients with
respect to the input, every initial state and every learnable parameter (within
``rtol = atol = 1e-5`` in float32 and ``1e-2`` in float16 / bfloat16), over every model the
backend serves:

- ``test_dynamics``: the model's default hyper-parameters x hard reset (``v_reset`` 0 and -0.3)
  and soft reset x ``detach_reset``, and each of the model's ``examples``, with the state
  sequences stored;
- ``test_surrogates``: every surrogate the backend claims, default parameters (hard and soft
  reset) and doubled parameters (where any is non-zero), plus the surrogate classes of other
  packages listed in :attr:`BackendConformance.extra_surrogates` wherever the backend serves
  them (a case that skips with the reason where it does not);
- ``test_dtypes``: every dtype the backend claims;
- ``test_modes``: kernel mode ``"single_step"`` (when the backend has that kernel), chained over
  the sequence;
- ``test_layouts``: ``T = 1``, an odd size across a 1024 boundary, transposed and strided
  (non-contiguous) inputs, no state sequences, inference without gradients, gradients through
  the states only, no gradient for the input.

A spike whose charged value lies within rounding of the threshold may legitimately differ
between float32 arithmetic and the float64 reference; the reference then takes the kernel's
decision for that spike (and only where ``|h - threshold|`` is below the dtype's tolerance), so
the rest of the comparison stays meaningful. Any other spike difference fails.

Every claimed device that exists here is tested (interpreted / emulated devices included).
When the backend is not installed or its probe reports a reason, the tests skip with it.

Class attributes narrow or widen the matrix: :attr:`devices`, :attr:`dtypes`,
:attr:`surrogates`, :attr:`models` (``None`` = all that the backend serves),
:attr:`extra_surrogates`, :attr:`size`,
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

_RESETS: dict[str, float | None] = {"hard": 0.0, "hardneg": -0.3, "soft": None}
_GROUPS = ("dynamics", "surrogates", "dtypes", "modes", "layouts")


@dataclass(frozen=True)
class ConformanceCase:
    """One comparison of the conformance suite.

    Attributes:
        model: the registered model name.
        hyper: hyper-parameter overrides ``(name, value)`` (the model's defaults otherwise).
        device: device type the tensors live on.
        dtype: dtype of the input and states.
        surrogate: surrogate class name (of :mod:`snn.surrogate`, or of a class in
            :attr:`BackendConformance.extra_surrogates`).
        surrogate_scale: the surrogate's parameters are its defaults times this factor.
        reset: ``"hard"`` (``v_reset=0``), ``"hardneg"`` (``-0.3``), ``"soft"`` (``None``), or
            ``"model"`` (leave ``v_reset`` as the hyper-parameters say).
        detach_reset: the config's ``detach_reset``.
        mode: the kernel mode: ``"multi_step"``, or ``"single_step"`` (one call per step).
        shape: ``(T, *)`` of the input.
        layout: ``"contiguous"``, ``"transposed"`` or ``"strided"`` input memory.
        store: request the state sequences.
        grads: ``"all"`` (input, states, learnables), ``"none"`` (no_grad inference),
            ``"states_only"`` (the loss uses the states, not the spikes) or ``"no_x"`` (the
            input does not require grad).
        skip: a reason to skip instead of running.
    """

    model: str
    hyper: tuple[tuple[str, Any], ...] = ()
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    surrogate: str = "Sigmoid"
    surrogate_scale: int = 1
    reset: str = "model"
    detach_reset: bool = False
    mode: str = "multi_step"
    shape: tuple[int, ...] = (5, 3, 7)
    layout: str = "contiguous"
    store: bool = True
    grads: str = "all"
    skip: str | None = None

    @property
    def id(self) -> str:
        """A readable pytest id."""
        if self.skip is not None:
            return "unavailable"
        parts = [self.model]
        parts += [f"{k}={v}" for k, v in self.hyper]
        parts += [
            self.device, str(self.dtype).replace("torch.", ""),
            self.surrogate if self.surrogate_scale == 1 else f"{self.surrogate}x{self.surrogate_scale}",
            self.reset, "detach" if self.detach_reset else "nodetach", self.mode,
            "x".join(map(str, self.shape)), self.layout, "seqs" if self.store else "noseqs", self.grads,
        ]
        return "-".join(parts)


def _device_exists(device: str) -> bool:
    if device == "cpu":
        return True
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def _scalable(cls: type[Any]) -> bool:
    """Whether doubling the surrogate's default parameters changes any of them."""
    return any(value != 0 for value in cls().params.values())


def _operations(cls: type[Any]) -> frozenset[str]:
    """The :mod:`snn.expr` operations of a surrogate class's derivative (default parameters)."""
    from snn.expr import operations
    from snn.surrogate import derivative_expression

    return operations(derivative_expression(cls().spec))


class _ForcedSpike(torch.autograd.Function):
    """``H(z)``, except where ``forced`` is given (ties): the kernel's spike; gradient ``g(z)``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, forced: torch.Tensor, derivative: Any) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.derivative = derivative
        return forced

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (z,) = ctx.saved_tensors
        return grad * ctx.derivative(z), None, None


class BackendConformance:
    """Base class of a backend's conformance tests (see the module docstring).

    Attributes:
        backend: the backend name to test (required).
        devices: device types to test; ``None``: every claimed device that exists here.
        dtypes: dtypes to test; ``None``: every claimed dtype.
        surrogates: surrogate names to test; ``None``: every claimed surrogate.
        extra_surrogates: surrogate classes of other packages
            (:class:`snn.surrogate.SurrogateFunctionBase` subclasses constructible without
            arguments) tested in the ``surrogates`` group too, wherever the backend serves their
            spec (:meth:`snn.registry.BackendInfo.serves_surrogate`); their names must differ
            from the built-in ones and from each other.
        models: model names to test; ``None``: every registered model the backend serves.
            A model, surrogate, dtype or device named here that the backend does not serve is
            a ``ValueError`` when the cases are built (never a silently smaller matrix).
        size: ``(T, *)`` of the main cases (small: the suite may run under an interpreter).
        large_size: the odd size crossing a block boundary.
        tolerances: ``dtype -> (rtol, atol)`` for states and gradients (also the band around
            the threshold where a spike may follow the kernel's rounding).
        plugin: a plugin object registered with :func:`snn.plugins.temporary_plugin` while the
            suite runs (``None``: use the installed plugins).
        plugin_name: its plugin name.
        seed: seed of the random inputs.
    """

    backend: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...] | None] = None
    dtypes: ClassVar[tuple[torch.dtype, ...] | None] = None
    surrogates: ClassVar[tuple[str, ...] | None] = None
    extra_surrogates: ClassVar[tuple[type[Any], ...]] = ()
    models: ClassVar[tuple[str, ...] | None] = None
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

    def _check_requested(self, info: Any, registry: Any) -> None:
        """Raise ``ValueError`` when a model, surrogate, dtype or device named on the class is
        not served by the backend: naming it asks for its tests, which must not vanish; and
        ``TypeError`` for sizes that are not tuples of positive integers."""
        for name in ("size", "large_size"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) >= 1
                    and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)):
                raise TypeError(
                    f"{type(self).__name__}.{name}: expected a tuple (T, *) of positive integers, got {value!r}"
                )
        requested = {
            "models": [n for n in self.models or () if not info.serves_model(registry.model(n), "multi_step")],
            "surrogates": [n for n in self.surrogates or () if not info.serves_surrogate(n)],
            "dtypes": [str(d) for d in self.dtypes or () if d not in info.dtypes],
            "devices": [d for d in self.devices or () if not info.serves_device(d)],
        }
        for what, missing in requested.items():
            if missing:
                raise ValueError(
                    f"{type(self).__name__}.{what}: backend {self.backend!r} does not serve {missing}; "
                    f"name only what it claims (None: everything it claims)"
                )

    def conformance_cases(self, group: str) -> list[ConformanceCase]:
        """The cases of one test group (``"dynamics"``, ``"surrogates"``, ``"dtypes"``,
        ``"modes"`` or ``"layouts"``)."""
        if group not in _GROUPS:
            raise ValueError(f"group: expected one of {_GROUPS}, got {group!r}")
        with self.registry() as registry:
            reason = self._unavailable(registry)
            if reason is not None:
                return [ConformanceCase("?", skip=f"backend {self.backend!r} unavailable: {reason}")]
            info = registry.backend(self.backend)
            models = [
                registry.model(name) for name in (self.models or sorted(registry.models))
                if info.serves_model(registry.model(name), "multi_step")
            ]
            devices = [d for d in (self.devices or sorted(info.devices | info.emulated_devices)) if _device_exists(d)]
            dtypes = [d for d in (self.dtypes or (torch.float32, torch.float16, torch.bfloat16, torch.float64))
                      if d in info.dtypes]
            surrogates = [s for s in (self.surrogates or info.claimed_surrogates()) if info.serves_surrogate(s)]
            extras = self._extra_surrogate_classes()
            extra_served = [name for name, cls in extras.items() if info.serves_surrogate(cls().spec)]
            single = info.serves_mode("single_step")
            self._check_requested(info, registry)
        if not models or not devices or not dtypes or not surrogates:
            what = "models" if not models else "devices here" if not devices else "dtypes" if not dtypes else "surrogates"
            return [ConformanceCase("?", skip=f"backend {self.backend!r}: nothing to test (no {what})")]
        main_dtype = torch.float32 if torch.float32 in dtypes else dtypes[0]
        main_surrogate = "Sigmoid" if "Sigmoid" in surrogates else surrogates[0]
        cases: list[ConformanceCase] = []
        for device in devices:
            for model in models:
                resets = tuple(_RESETS) if "v_reset" in model.hyperparameter_names else ("model",)
                one = ConformanceCase(
                    model.name, device=device, dtype=main_dtype, surrogate=main_surrogate, shape=self.size,
                    reset=resets[0],
                )
                if group == "dynamics":
                    for reset in resets:
                        for detach in (False, True):
                            cases.append(replace(one, reset=reset, detach_reset=detach))
                    for example in model.examples:
                        for detach in (False, True):
                            cases.append(replace(one, hyper=tuple(sorted(example.items())), reset="model", detach_reset=detach))
                elif group == "surrogates":
                    soft = ("soft",) if "soft" in resets else ()
                    tested = [*surrogates, *extra_served]
                    cases += [replace(one, surrogate=s, reset=r) for s in tested for r in (resets[0], *soft)]
                    cases += [
                        replace(one, surrogate=s, surrogate_scale=2) for s in tested
                        if _scalable(self._surrogate_class(s))
                    ]
                    cases += [
                        replace(one, surrogate=s, skip=f"backend {self.backend!r} does not serve surrogate {s} "
                                f"(its derivative uses {sorted(_operations(extras[s]))})")
                        for s in extras if s not in extra_served
                    ]
                elif group == "dtypes":
                    cases += [replace(one, dtype=d) for d in dtypes]
                elif group == "modes":
                    if single:
                        cases += [replace(one, mode="single_step"), replace(one, mode="single_step", reset=resets[-1])]
                elif group == "layouts":
                    t = self.size[0]
                    last = resets[-1]
                    cases += [
                        replace(one, shape=(1, *self.size[1:])),
                        replace(one, shape=self.large_size, reset=last),
                        replace(one, shape=(t, 7, 3), layout="transposed"),
                        replace(one, shape=(t, 2, 9), layout="strided", reset=resets[1] if len(resets) > 1 else last),
                        replace(one, store=False),
                        replace(one, grads="none"),
                        replace(one, grads="states_only", reset=last),
                        replace(one, grads="no_x", store=False),
                    ]
        if not cases:
            return [ConformanceCase("?", skip=f"backend {self.backend!r}: no {group} cases (e.g. no single-step kernel)")]
        return cases

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """pytest hook: parametrise ``case`` of each ``test_<group>`` method."""
        if "case" not in metafunc.fixturenames:
            return
        group = metafunc.function.__name__.removeprefix("test_")
        cases = self.conformance_cases(group)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    # -- one comparison --------------------------------------------------------------------------

    def _extra_surrogate_classes(self) -> dict[str, type[Any]]:
        """:attr:`extra_surrogates` by class name (checked)."""
        from snn.surrogate import SURROGATES, SurrogateFunctionBase

        extras: dict[str, type[Any]] = {}
        for cls in self.extra_surrogates:
            if not (isinstance(cls, type) and issubclass(cls, SurrogateFunctionBase)):
                raise TypeError(
                    f"{type(self).__name__}.extra_surrogates: expected snn.surrogate.SurrogateFunctionBase "
                    f"subclasses, got {cls!r}"
                )
            name = cls.__name__
            if name in SURROGATES or name in extras:
                raise ValueError(
                    f"{type(self).__name__}.extra_surrogates: the class name {name!r} is already taken "
                    f"({'by snn.surrogate' if name in SURROGATES else 'by another extra surrogate'})"
                )
            extras[name] = cls
        return extras

    def _surrogate_class(self, name: str) -> type[Any]:
        from snn.surrogate import SURROGATES

        return SURROGATES.get(name) or self._extra_surrogate_classes()[name]

    def config_for(self, case: ConformanceCase, registry: Any) -> Any:
        """The :class:`~snn.models.NeuronConfig` of ``case``."""
        model = registry.model(case.model)
        cls = self._surrogate_class(case.surrogate)
        params = {name: value * case.surrogate_scale for name, value in cls().params.items()}
        hyper = dict(case.hyper)
        if case.reset != "model":
            hyper["v_reset"] = _RESETS[case.reset]
        return model.config(cls(**params).spec, case.detach_reset, **hyper)

    def make_inputs(self, case: ConformanceCase, config: Any) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Seeded ``(x_seq, states, learnables)`` for ``case``: leaves without grad, ``x_seq`` in the
        case's layout. States start in ``[-0.3, 0.5)``, learnable parameters in ``[0.5, 1.5)``."""
        gen = torch.Generator().manual_seed(self.seed + sum(map(ord, case.id)))
        t, *rest = case.shape
        values = torch.randn(case.shape, generator=gen, dtype=torch.float64) * 0.9 + 0.45
        to: dict[str, Any] = {"dtype": case.dtype, "device": case.device}
        states = [
            (torch.rand(tuple(rest), generator=gen, dtype=torch.float64) * 0.8 - 0.3).to(**to)
            for _ in config.model.states
        ]
        learnables = [
            (torch.rand((), generator=gen, dtype=torch.float64) + 0.5).to(**to) for _ in config.model.learnables
        ]
        if case.layout == "transposed" and len(rest) >= 2:
            x = torch.empty((t, *reversed(rest)), **to).transpose(1, len(rest))
        elif case.layout == "strided":
            x = torch.empty((t, *rest[:-1], 2 * rest[-1]), **to)[..., ::2]
        else:
            x = torch.empty(case.shape, **to)
        x.copy_(values)
        return x, states, learnables

    def _leaves(
        self, case: ConformanceCase, x: torch.Tensor, states: list[torch.Tensor], learnables: list[torch.Tensor],
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        cast = (lambda t: t.detach().to(dtype)) if dtype is not None else (lambda t: t.detach())
        x, states, learnables = cast(x), [cast(s) for s in states], [cast(p) for p in learnables]
        if case.grads in ("all", "states_only"):
            x.requires_grad_(True)
        if case.grads != "none":
            for t in (*states, *learnables):
                t.requires_grad_(True)
        return x, states, learnables

    def _run_kernel(self, registry: Any, case: ConformanceCase, config: Any, x: torch.Tensor,
                    states: list[torch.Tensor], learnables: list[torch.Tensor]) -> tuple[Any, ...]:
        kernel = registry.kernel(self.backend, case.mode)
        with torch.set_grad_enabled(case.grads != "none"):
            if case.mode == "multi_step":
                spikes, last, seqs = kernel(x, tuple(states), config, learnables=tuple(learnables), store_state_seqs=case.store)
                return spikes, tuple(last), (tuple(seqs) if seqs is not None else None)
            current = tuple(states)
            spike_list: list[torch.Tensor] = []
            seq_lists: list[list[torch.Tensor]] = [[] for _ in states]
            for t in range(x.shape[0]):
                spike, current, extra = kernel(x[t], current, config, learnables=tuple(learnables))
                assert extra is None, f"{case.id}: a single-step kernel must return None as its third value"
                current = tuple(current)
                spike_list.append(spike)
                for seq, value in zip(seq_lists, current):
                    seq.append(value)
            seqs = tuple(torch.stack(seq) for seq in seq_lists) if case.store else None
            return torch.stack(spike_list), current, seqs

    def _run_reference(self, case: ConformanceCase, config: Any, x: torch.Tensor, states: list[torch.Tensor],
                       learnables: list[torch.Tensor], kernel_spikes: torch.Tensor) -> tuple[Any, ...]:
        from snn.models import autograd_step
        from snn.surrogate import derivative_function

        model = config.model
        derivative = derivative_function(config.surrogate)
        _, atol = self.tolerances.get(case.dtype, (1e-2, 1e-2))
        forced_all = kernel_spikes.detach().to(torch.float64)
        step_index = [0]

        def fire(z: torch.Tensor) -> torch.Tensor:
            plain = (z >= 0).to(z.dtype)
            tie = z.detach().abs() < atol
            forced = torch.where(tie, forced_all[step_index[0]], plain)
            return _ForcedSpike.apply(z, forced, derivative)

        current = dict(zip(model.state_names, states))
        params = dict(zip(model.learnables, learnables))
        spikes: list[torch.Tensor] = []
        seqs: list[list[torch.Tensor]] = [[] for _ in states]
        with torch.set_grad_enabled(case.grads != "none"):
            for t in range(x.shape[0]):
                step_index[0] = t
                spike, current = autograd_step(config, x[t], current, params, fire)
                spikes.append(spike)
                for seq, name in zip(seqs, model.state_names):
                    seq.append(current[name])
        last = tuple(current[name] for name in model.state_names)
        return torch.stack(spikes), last, (tuple(torch.stack(s) for s in seqs) if case.store else None)

    def _gradients(self, case: ConformanceCase, outputs: tuple[Any, ...], inputs: list[torch.Tensor]) -> list[Any]:
        spikes, last, seqs = outputs
        gen = torch.Generator().manual_seed(self.seed)

        def weight(t: torch.Tensor) -> torch.Tensor:
            return torch.randn(t.shape, generator=gen, dtype=torch.float64).to(device=t.device)

        loss = sum((v.double() * weight(v)).sum() for v in last)
        spike_weight = weight(spikes)
        if case.grads != "states_only":
            loss = loss + (spikes.double() * spike_weight).sum()
        if seqs is not None:
            loss = loss + sum((v.double() * weight(v)).sum() for v in seqs)
        wanted = [t for t in inputs if t.requires_grad]
        found = iter(torch.autograd.grad(loss, wanted, allow_unused=True))
        return [next(found) if t.requires_grad else None for t in inputs]

    def check_case(self, case: ConformanceCase) -> None:
        """Run ``case`` on the backend and the float64 reference and assert they agree.

        Raises:
            AssertionError: a mismatch (which output, which case, the largest difference).
            pytest.skip.Exception: the case is marked to skip or the backend is unavailable.
            ModuleNotFoundError: pytest is not installed (the message names the ``test`` extra).
        """
        from snn.testing import _import_pytest

        pytest = _import_pytest("snn.testing.BackendConformance")

        if case.skip is not None:
            pytest.skip(case.skip)
        with self.registry() as registry:
            reason = self._unavailable(registry)
            if reason is not None:
                pytest.skip(f"backend {self.backend!r} unavailable: {reason}")
            config = self.config_for(case, registry)
            x0, states0, learnables0 = self.make_inputs(case, config)
            before = [t.clone() for t in (x0, *states0, *learnables0)]
            x, states, learnables = self._leaves(case, x0, states0, learnables0)
            got = self._run_kernel(registry, case, config, x, states, learnables)
            for old, new in zip(before, (x0, *states0, *learnables0)):
                assert torch.equal(old, new), f"{case.id}: the kernel modified one of its inputs"
        rx, rstates, rlearn = self._leaves(case, x0, states0, learnables0, dtype=torch.float64)
        want = self._run_reference(case, config, rx, rstates, rlearn, got[0])
        rtol, atol = self.tolerances.get(case.dtype, (1e-2, 1e-2))
        names = config.model.state_names
        self._compare(case, "spikes", got[0], want[0], rtol, atol)
        for name, a, e in zip(names, got[1], want[1]):
            self._compare(case, f"last {name}", a, e, rtol, atol)
        if case.store:
            assert got[2] is not None, f"{case.id}: state sequences requested but None returned"
            for name, a, e in zip(names, got[2], want[2]):
                self._compare(case, f"sequence of {name}", a, e, rtol, atol)
        else:
            assert got[2] is None, f"{case.id}: state sequences not requested but returned"
        if case.grads == "none":
            return
        labels = ["x", *(f"state {n}" for n in names), *(f"learnable {p}" for p in config.model.learnables)]
        grads_got = self._gradients(case, got, [x, *states, *learnables])
        grads_want = self._gradients(case, want, [rx, *rstates, *rlearn])
        for label, a, e in zip(labels, grads_got, grads_want):
            if e is None and a is None:
                continue
            a = torch.zeros_like(e) if a is None else a
            e = torch.zeros_like(a, dtype=torch.float64) if e is None else e
            self._compare(case, f"gradient of {label}", a, e, rtol, atol)

    @staticmethod
    def _compare(case: ConformanceCase, name: str, actual: Any, expected: torch.Tensor, rtol: float, atol: float) -> None:
        assert isinstance(actual, torch.Tensor), f"{case.id}: {name}: expected a tensor, got {actual!r}"
        assert actual.shape == expected.shape, (
            f"{case.id}: {name}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
        )
        if name == "spikes" or name.startswith(("last", "sequence")):
            assert actual.dtype == case.dtype, f"{case.id}: {name}: dtype {actual.dtype}, expected {case.dtype}"
        a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
        if name == "spikes":
            if not torch.equal(a, e):
                where = (a != e).nonzero()[:5].tolist()
                raise AssertionError(f"{case.id}: spikes differ from the reference at {where}")
            return
        if not torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            diff = (a - e).abs().nan_to_num(nan=float("inf"))
            worst = diff.argmax()
            raise AssertionError(
                f"{case.id}: {name} differs from the float64 reference beyond rtol={rtol}, atol={atol}: largest "
                f"difference {diff.max().item():.3g} ({a.flatten()[worst].item():.6g} vs "
                f"{e.flatten()[worst].item():.6g}); scale {e.abs().max().item():.3g}"
            )

    # -- the tests -------------------------------------------------------------------------------

    def test_dynamics(self, case: ConformanceCase) -> None:
        """Every model x reset mode x detach_reset, and the model's example settings."""
        self.check_case(case)

    def test_surrogates(self, case: ConformanceCase) -> None:
        """Every claimed surrogate, for every model, default and doubled parameters."""
        self.check_case(case)

    def test_dtypes(self, case: ConformanceCase) -> None:
        """Every claimed dtype, for every model."""
        self.check_case(case)

    def test_modes(self, case: ConformanceCase) -> None:
        """Single-step calls chained over the sequence (when the backend has a single-step kernel)."""
        self.check_case(case)

    def test_layouts(self, case: ConformanceCase) -> None:
        """T = 1, odd sizes, non-contiguous inputs, no state sequences, inference, partial gradients."""
        self.check_case(case)

"""``snn bench``: time multi-step neurons on every installed backend, side by side.

For each backend in the registry, neuron model (IF, LIF, PLIF by default; any registered model
with a module class), sequence length ``T``, number of neurons ``N`` and dtype, a multi-step neuron layer (``step_mode='m'``) is timed three ways, each
the median of several runs after a warm-up:

- *forward*: with gradients enabled (the input requires grad), so the kernel saves what its
  backward needs;
- *backward*: ``spikes.backward(grad)`` after such a forward;
- *inference*: the forward under :func:`torch.no_grad`.

Next to each median the row keeps the fastest and slowest run. When they lie far apart (the
range exceeds :data:`~snn.bench.report.WIDE_SPREAD` times the median, e.g. because another job shares the CPU),
the report carries a warning: such medians, and the ratios between backends, are unreliable.

Each row also gives the training time (forward + backward) relative to the ``torch`` backend and
to the reference library (SpikingJelly's neurons of the same kind and defaults, when
``spikingjelly`` is importable; it picks its own kernels), and the achieved bandwidth against the
bytes-moved floor of a multi-step layer: ``3 * itemsize`` bytes per neuron-step forward with
grad (read ``x``, write the spike, save ``h``), ``3 * itemsize`` backward (read the spike
gradient and ``h``, write the input gradient) and ``2 * itemsize`` in inference (12, 12 and 8 B
in float32). Each row also gives the bandwidth of a plain copy of one ``[T, N]`` tensor into
another (``copy_``, read plus write, timed in the same rounds as the backends) and each phase's
bandwidth as a fraction of it. Backends or configurations that cannot run are listed with their
reason.

This module measures, :mod:`snn.bench.report` holds the results and :mod:`snn.bench.command`
prints them. Use it from Python through
:func:`benchmark`.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from snn.bench.baseline import BASELINE_LABEL
from snn.bench.report import PHASES, BenchReport, BenchRow, Skipped, floor_bytes

__all__ = [
    "DESCRIPTION",
    "KINDS",
    "DTYPES",
    "REFERENCE_NAME",
    "time_neuron",
    "benchmark",
]

#: One line for ``snn --help``.
DESCRIPTION = "time multi-step neurons of any model on every installed backend (and the reference library)"

#: The default neuron models (registry names); any registered model with a module class can be timed.
KINDS = ("if", "lif", "plif")

#: The backend label of the reference library's rows.
REFERENCE_NAME = "spikingjelly"

#: The dtypes ``snn bench --dtype`` accepts, by name.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        reset = getattr(m, "reset", None)
        if callable(reset) and hasattr(m, "_memories"):
            reset()


def _time_once(
    module: nn.Module, x_seq: torch.Tensor, x_leaf: torch.Tensor, grad_seq: torch.Tensor
) -> tuple[float, float, float, torch.Tensor]:
    """One forward-with-grad, backward and inference run: seconds each, and the inference spikes."""
    device = x_seq.device
    x_leaf.grad = None
    _reset(module)
    _synchronize(device)
    start = time.perf_counter()
    spikes = module(x_leaf)
    _synchronize(device)
    middle = time.perf_counter()
    spikes.backward(grad_seq)
    _synchronize(device)
    end = time.perf_counter()
    del spikes
    _reset(module)
    with torch.no_grad():
        _synchronize(device)
        start_inference = time.perf_counter()
        inferred = module(x_seq)
        _synchronize(device)
        end_inference = time.perf_counter()
    _reset(module)
    return middle - start, end - middle, end_inference - start_inference, inferred


def _medians_ms(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(1e3 * statistics.median(column) for column in zip(*samples))


def _ranges_ms(samples: list[tuple[float, float, float]]) -> tuple[tuple[float, float], ...]:
    """``(fastest, slowest)`` in ms of each phase."""
    return tuple((1e3 * min(column), 1e3 * max(column)) for column in zip(*samples))


def time_neuron(
    module: nn.Module, x_seq: torch.Tensor, grad_seq: torch.Tensor, repeats: int, warmup: int = 2
) -> tuple[float, float, float]:
    """Median forward, backward and inference times of a multi-step neuron layer, in ms.

    Args:
        module: a neuron in multi-step mode (state reset before every run).
        x_seq: ``[T, N]`` input (not modified; a leaf copy that requires grad is used).
        grad_seq: ``[T, N]`` gradient fed to ``spikes.backward``.
        repeats: timed runs, ``>= 1``.
        warmup: untimed runs first (kernel compilation, caches).

    Returns:
        ``(forward_ms, backward_ms, inference_ms)``.
    """
    x_leaf = x_seq.detach().clone().requires_grad_(True)
    samples = []
    for i in range(warmup + repeats):
        sample = _time_once(module, x_seq, x_leaf, grad_seq)[:3]
        if i >= warmup:
            samples.append(sample)
    return _medians_ms(samples)


def _ours(kind: str, backend: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from snn.neuron import node_class

        cls = node_class(kind)
        assert cls is not None
        return cls(step_mode="m", backend=backend)

    return make


def _reference_module() -> tuple[Any, str] | None:
    """SpikingJelly's neuron module and version, or ``None`` when it cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from spikingjelly.activation_based import neuron as reference_neuron
    except Exception:  # any import failure means: no reference here
        return None
    try:
        version = importlib.metadata.version("spikingjelly")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return reference_neuron, version


def _reference(module: Any, kind: str) -> Callable[[], nn.Module] | None:
    """The reference library's neuron of the same class name, or ``None`` when it has none."""
    from snn.neuron import node_class

    ours = node_class(kind)
    cls = getattr(module, ours.__name__, None) if ours is not None else None
    if cls is None:
        return None

    def make() -> nn.Module:
        try:
            return cls(step_mode="m")
        except TypeError:  # neurons without a step_mode argument (CUBALIFNode)
            node = cls()
            node.step_mode = "m"
            return node

    return make


def _baseline(path: str, kind: str, T: int, N: int, dtype: torch.dtype, device: torch.device, seed: int) -> Callable[[], Any]:
    def make() -> Any:
        from snn.bench.baseline import BaselineWorker
        from snn.neuron import node_class

        cls = node_class(kind)
        assert cls is not None
        return BaselineWorker(path, cls.__name__, T, N, dtype, device, seed)

    return make


def _inputs(T: int, N: int, dtype: torch.dtype, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Inputs around threshold so that neurons fire on roughly a third of the steps.
    x_seq = (torch.rand(T, N, generator=generator) * 1.6).to(device=device, dtype=dtype)
    grad_seq = torch.randn(T, N, generator=generator).to(device=device, dtype=dtype)
    return x_seq, grad_seq


def _backend_skip_reason(info: Any, kind: str, device: torch.device, dtype: torch.dtype) -> str | None:
    from snn.plugins import get_registry

    if not info.serves_model(get_registry().model(kind), "multi_step"):
        return f"no multi-step kernel for model {kind}"
    if device.type not in info.devices:
        if device.type in info.emulated_devices:
            return f"serves {device.type} only through an interpreter (tests only)"
        return f"does not serve device {device.type!r} (serves {', '.join(sorted(info.devices)) or 'none'})"
    if dtype not in info.dtypes:
        return f"does not serve {dtype}"
    return None


def _measure_all(
    candidates: Sequence[tuple[str, Callable[[], nn.Module]]], kind: str, T: int, N: int,
    dtype: torch.dtype, device: torch.device, repeats: int, warmup: int, seed: int,
) -> tuple[
    dict[str, tuple[float, float, float]],
    dict[str, tuple[tuple[float, float], ...]],
    dict[str, torch.Tensor],
    list[Skipped],
    float,
]:
    """Time every candidate on the same input, taking turns run by run, and a plain copy.

    Alternating the candidates spreads background load on a shared machine over all of them
    instead of penalising whichever ran during a busy spell. A candidate that raises is dropped
    and reported.

    Returns:
        ``label -> (forward_ms, backward_ms, inference_ms)`` (medians), ``label -> ((min, max)
        per phase)``, ``label -> inference spikes``, the candidates that failed and the copy
        bandwidth in GB/s (:func:`_copy_seconds` once per round, median).
    """
    dtype_name = str(dtype).removeprefix("torch.")
    x_seq, grad_seq = _inputs(T, N, dtype, device, seed)
    copy_target = torch.empty_like(x_seq)
    copies: list[float] = []
    x_leaf = x_seq.detach().clone().requires_grad_(True)
    modules: dict[str, Any] = {}
    failed: list[Skipped] = []
    for label, make in candidates:
        try:
            made = make()
            modules[label] = made if hasattr(made, "sample") else made.to(device=device, dtype=dtype)
        except Exception as exc:  # a failing backend is reported, not fatal
            failed.append(Skipped(label, f"{type(exc).__name__}: {exc}", kind, dtype_name))
    samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label in modules}
    spikes: dict[str, torch.Tensor] = {}
    for i in range(warmup + repeats):
        seconds = _copy_seconds(copy_target, x_seq)
        if i >= warmup:
            copies.append(seconds)
        for label in list(modules):
            try:
                if hasattr(modules[label], "sample"):  # a baseline worker (snn.bench.baseline)
                    forward, backward, inference, inferred = modules[label].sample()
                else:
                    forward, backward, inference, inferred = _time_once(modules[label], x_seq, x_leaf, grad_seq)
            except Exception as exc:  # a failing backend is reported, not fatal
                failed.append(Skipped(label, f"{type(exc).__name__}: {exc}", kind, dtype_name))
                del modules[label], samples[label]
                continue
            spikes[label] = inferred
            if i >= warmup:
                samples[label].append((forward, backward, inference))
    for module in modules.values():
        if hasattr(module, "close"):
            module.close()
    medians = {label: _medians_ms(s) for label, s in samples.items()}
    ranges = {label: _ranges_ms(s) for label, s in samples.items()}
    copy_gbps = 2 * x_seq.numel() * x_seq.element_size() / statistics.median(copies) / 1e9
    return medians, ranges, spikes, failed, copy_gbps


def _copy_seconds(target: torch.Tensor, source: torch.Tensor) -> float:
    """Seconds of one ``target.copy_(source)`` (both allocated and touched beforehand)."""
    _synchronize(source.device)
    start = time.perf_counter()
    target.copy_(source)
    _synchronize(source.device)
    return time.perf_counter() - start


def _same_spikes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal spikes; a baseline worker's checksum (``[2]``) is compared with the other's checksum."""
    from snn.bench.baseline import spike_checksum

    if a.shape == b.shape:
        return bool(torch.equal(a, b))
    if a.dim() == 1 and a.numel() == 2:
        return bool(torch.equal(a, spike_checksum(b)))
    if b.dim() == 1 and b.numel() == 2:
        return bool(torch.equal(spike_checksum(a), b))
    return False


def benchmark(
    backends: Iterable[str] | None = None,
    kinds: Sequence[str] = ("lif",),
    Ts: Sequence[int] = (16,),
    Ns: Sequence[int] = (4096,),
    dtypes: Sequence[str] = ("float32",),
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 2,
    reference: bool = True,
    seed: int = 0,
    on_row: Callable[[BenchRow], None] | None = None,
    baseline: str | None = None,
) -> BenchReport:
    """Measure every combination and return the report.

    Args:
        backends: backend names to measure; ``None`` means every registered backend. Unknown
            names raise; unavailable ones are listed in ``skipped`` with their reason.
        kinds: registered neuron model names (default ``("lif",)``).
        Ts: sequence lengths.
        Ns: neurons per step.
        dtypes: dtype names (``float32``, ``float16``, ``bfloat16``, ``float64``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        repeats: timed runs per measurement (median reported), ``>= 1``.
        warmup: untimed runs first, ``>= 0``. Two by default: the CPU kernels' buffer cache
            (:mod:`snn.backends.memory`) holds every buffer a run needs only from the third run on,
            as the previous run's inference spikes are still held while the next run trains.
        reference: also time the reference library when it is importable.
        seed: seeds the inputs.
        on_row: called with each row as soon as it is measured.
        baseline: the root of another snn checkout (e.g. a git worktree of main): its torch
            backend is timed in a worker process, taking turns with the others, as
            ``torch@baseline`` (see :mod:`snn.bench.baseline`).

    Returns:
        The :class:`BenchReport`.

    Raises:
        ValueError: an unknown model or dtype, a non-positive size, CUDA asked for without one,
            or a ``baseline`` that is not an snn checkout.
        snn.errors.BackendNotFoundError: an unknown backend name.
    """
    from snn.plugins import get_registry

    registry = get_registry()
    from snn.neuron import node_class

    for kind in kinds:
        if kind not in registry.models or node_class(kind) is None:
            known = sorted(m for m in registry.models if node_class(m) is not None)
            raise ValueError(f"models: expected registered neuron models with a module class ({', '.join(known)}), got {kind!r}")
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"dtypes: expected names out of {tuple(DTYPES)}, got {name!r}")
    for what, values in (("T", Ts), ("N", Ns)):
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{what}: expected positive integers, got {list(values)!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats / warmup: expected >= 1 / >= 0, got {repeats!r} / {warmup!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if torch_device.type not in ("cpu", "cuda") or (torch_device.type == "cpu" and torch_device.index not in (None, 0)):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device here")
    if torch_device.type == "cuda" and (torch_device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device: {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    # each value once, in the order given (as for the backends)
    kinds, dtypes = list(dict.fromkeys(kinds)), list(dict.fromkeys(dtypes))
    Ts, Ns = list(dict.fromkeys(Ts)), list(dict.fromkeys(Ns))
    if baseline is not None:
        from snn.bench.baseline import checkout_source

        checkout_source(baseline)  # refused up front, not as a skipped row after the others ran

    names = list(registry.backends) if backends is None else list(dict.fromkeys(backends))
    names.sort(key=lambda n: (n != "torch", n))
    infos = {name: registry.backend(name) for name in names}
    skipped: list[Skipped] = []
    usable: list[str] = []
    for name in names:
        reason = infos[name].unavailable_reason()
        if reason is not None:
            skipped.append(Skipped(name, reason))
        else:
            usable.append(name)
    reference_module = _reference_module() if reference else None
    if reference and reference_module is None:
        skipped.append(Skipped(REFERENCE_NAME, "spikingjelly is not importable"))

    rows: list[BenchRow] = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for kind in kinds:
            for T in Ts:
                for N in Ns:
                    candidates: list[tuple[str, Callable[[], nn.Module]]] = []
                    for name in usable:
                        reason = _backend_skip_reason(infos[name], kind, torch_device, dtype)
                        if reason is not None:
                            if T == Ts[0] and N == Ns[0]:
                                skipped.append(Skipped(name, reason, kind, dtype_name))
                            continue
                        candidates.append((name, _ours(kind, name)))
                    if baseline is not None:
                        candidates.append((BASELINE_LABEL, _baseline(baseline, kind, T, N, dtype, torch_device, seed)))
                    maker = _reference(reference_module[0], kind) if reference_module is not None else None
                    if maker is not None:
                        candidates.append((REFERENCE_NAME, maker))
                    measured, ranges, spikes, failed, copy_gbps = _measure_all(
                        candidates, kind, T, N, dtype, torch_device, repeats, warmup, seed
                    )
                    skipped.extend(f for f in failed if f not in skipped)
                    floors = floor_bytes(T, N, dtype)
                    torch_train = sum(measured["torch"][:2]) if "torch" in measured else None
                    reference_train = sum(measured[REFERENCE_NAME][:2]) if REFERENCE_NAME in measured else None
                    for label, (fwd, bwd, inf) in measured.items():
                        train_ms = fwd + bwd
                        row = BenchRow(
                            backend=label, kind=kind, T=T, N=N, dtype=dtype_name,
                            forward_ms=fwd, backward_ms=bwd, inference_ms=inf,
                            vs_torch=None if torch_train is None else torch_train / train_ms,
                            vs_reference=None if reference_train is None else reference_train / train_ms,
                            forward_gbps=floors["forward"] / (fwd * 1e-3) / 1e9,
                            backward_gbps=floors["backward"] / (bwd * 1e-3) / 1e9,
                            inference_gbps=floors["inference"] / (inf * 1e-3) / 1e9,
                            matches_torch=(
                                None if "torch" not in spikes or label == "torch"  # not compared with itself
                                else _same_spikes(spikes[label], spikes["torch"])
                            ),
                            copy_gbps=copy_gbps,
                            **{
                                f"{phase}_{end}_ms": value
                                for phase, bounds in zip(PHASES, ranges[label])
                                for end, value in zip(("min", "max"), bounds)
                            },
                        )
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
    return BenchReport(
        device=str(torch_device),
        rows=rows,
        skipped=skipped,
        repeats=repeats,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        reference_version=reference_module[1] if reference_module is not None else None,
    )

"""GPU benchmark of the multi-step neuron kernels: every installed backend, side by side.

For each kernel backend in snn's registry that can run here (``torch``, ``triton``, ``cupy``
...) and, when importable, SpikingJelly's own Triton kernels (``spikingjelly`` 2.0.0,
``activation_based.functional.neuron.{if,lif,plif}_multi_step`` with
``SJ_{IF,LIF,PLIF}_CUDA_IMPLEMENTATION=triton``, for those three models), the multi-step kernel
of every registered neuron model (or those of ``--models``) that the backend serves is timed
over ``T`` in {8, 32, 128} and ``N`` in {2**20, 2**24} neurons, float32 (plus float16 for LIF),
with the model's default hyper-parameters, the Sigmoid surrogate (alpha 4) and the states at
their initial values:

- *forward*: with gradients (the input requires grad), so the kernel saves what backward needs;
- *backward*: the backward of such a forward for a spike gradient (``retain_graph``);
- *inference*: the forward under :func:`torch.no_grad`.

Times are medians of CUDA-event measurements after warm-up. The achieved bandwidth counts the
bytes the neuron-kernel contract must move per neuron-step, from the model's kernel plan
(:func:`snn.models.kernel_plan`): forward with grad reads ``x`` and writes the spike and the
saved charged values (float32, one per :attr:`~snn.models.KernelPlan.saved_states`); backward
reads those and the spike gradient and writes the input gradient (plus the saved input where
:attr:`~snn.models.KernelPlan.save_input`); inference reads ``x`` and writes the spike. It is
shown as GB/s and as a fraction of the device-to-device copy bandwidth measured in the same run
(``dst.copy_(src)`` of a large tensor, counting read and write). Cases whose tensors would not
fit in free memory are skipped with a note.

Usage::

    python benchmarks/gpu_bench.py                  # full table (a few minutes on one H200)
    python benchmarks/gpu_bench.py --quick          # T=32, N=2**22
    python benchmarks/gpu_bench.py --models lif,plif --backends torch,triton
    python benchmarks/gpu_bench.py --json out.json  # also write the records
    TRITON_INTERPRET=1 python benchmarks/gpu_bench.py --dry-run   # tiny sizes on CPU (a test)

``--dry-run`` runs on CPU with tiny sizes and accepts emulated devices (Triton's interpreter);
its figures mean nothing, it checks that the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

SPIKINGJELLY_MODELS = ("if", "lif", "plif")
FULL_T = (8, 32, 128)
FULL_N = (2**20, 2**24)
QUICK_T = (32,)
QUICK_N = (2**22,)
DRY_T = (2,)
DRY_N = (67,)

# SpikingJelly reads its implementation choice when its operators are imported.
for _kind in ("IF", "LIF", "PLIF"):
    os.environ.setdefault(f"SJ_{_kind}_CUDA_IMPLEMENTATION", "triton")

import torch  # noqa: E402  (after the environment above)


@dataclass
class Record:
    """One measured (or skipped) configuration."""

    backend: str
    model: str
    dtype: str
    T: int
    N: int
    phase: str
    median_ms: float | None
    gbps: float | None
    copy_fraction: float | None
    note: str = ""


# -- timing ------------------------------------------------------------------------------------


class Timer:
    """Median wall time of a callable: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device, warmup: int, repeats: int) -> None:
        self.device = device
        self.warmup = warmup
        self.repeats = repeats

    def median_ms(self, fn: Callable[[], Any], setup: Callable[[], Any] | None = None) -> float:
        for _ in range(self.warmup):
            if setup is not None:
                setup()
            fn()
        samples = []
        for _ in range(self.repeats):
            if setup is not None:
                setup()
            if self.device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                began = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - began) * 1e3)
        return statistics.median(samples)


def copy_bandwidth(device: torch.device, timer: Timer, nbytes: int) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read plus bytes written)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = timer.median_ms(lambda: dst.copy_(src))
    return 2 * nbytes / (ms * 1e-3) / 1e9


# -- contenders --------------------------------------------------------------------------------


def snn_kernels(
    device: torch.device, allow_emulated: bool, models: list[str]
) -> tuple[dict[str, Callable[..., Any]], list[str]]:
    """``{backend name: kernel getter(model name)}`` for every registered backend that can run
    here; the getter raises for a model the backend does not serve."""
    from snn.plugins import get_registry

    registry = get_registry()
    found: dict[str, Callable[..., Any]] = {}
    notes = []
    for name, info in sorted(registry.backends.items()):
        if not any(info.serves_model(registry.model(m), "multi_step") for m in models):
            continue
        reason = info.unavailable_reason()
        if reason is None and not (device.type in info.devices or (allow_emulated and info.serves_device(device.type))):
            reason = f"does not serve device {device.type!r}"
        if reason is not None:
            notes.append(f"backend {name!r} skipped: {reason}")
            continue

        def get(model: str, _name: str = name, _info: Any = info) -> Callable[..., Any]:
            if not _info.serves_model(registry.model(model), "multi_step"):
                raise LookupError(f"backend {_name!r} does not serve model {model!r}")
            return registry.kernel(_name, "multi_step")

        found[name] = get
    return found, notes


def spikingjelly_kernels(device: torch.device) -> tuple[str, Callable[..., Any] | None, str]:
    """``(name, kernel getter or None, note)`` for SpikingJelly's multi-step functions.

    The name says which implementation SpikingJelly bound on this device
    (``spikingjelly[triton]`` on a GPU by default here, ``spikingjelly[torch-reference]`` on CPU).
    """
    try:
        from spikingjelly.activation_based.functional import neuron as sj
        from spikingjelly.activation_based.surrogate import Sigmoid as SJSigmoid
    except Exception as exc:  # optional
        return "spikingjelly", None, f"spikingjelly not importable ({type(exc).__name__}: {exc})"
    try:
        implementation = sj.neuron_implementation("lif", device).get("implementation")
    except Exception as exc:
        return "spikingjelly", None, f"spikingjelly has no implementation here ({type(exc).__name__}: {exc})"
    surrogate = SJSigmoid(alpha=4.0)

    def kernel_for(model: str) -> Callable[..., Any]:
        if model not in SPIKINGJELLY_MODELS:
            raise LookupError(f"SpikingJelly has no functional multi-step kernel for model {model!r}")

        def kernel(x_seq, states, config, *, learnables=(), store_state_seqs=False):
            (v0,) = states
            v = v0.float()
            hyper = config.hyper
            common = {"v_threshold": hyper["v_threshold"], "v_reset": hyper["v_reset"],
                      "surrogate_function": surrogate, "detach_reset": config.detach_reset,
                      "store_v_seq": store_state_seqs}
            if model == "if":
                return sj.if_multi_step(x_seq, v, **common)
            if model == "lif":
                return sj.lif_multi_step(x_seq, v, tau=hyper["tau"], decay_input=hyper["decay_input"], **common)
            return sj.plif_multi_step(x_seq, v, learnables[0], decay_input=hyper["decay_input"], **common)

        return kernel

    name = f"spikingjelly[{implementation}]"
    return name, kernel_for, f"{name}: SpikingJelly's functional multi-step kernels, v in float32"


# -- one configuration -------------------------------------------------------------------------


def make_config(model: str) -> Any:
    """The model's default configuration with the Sigmoid surrogate (alpha 4)."""
    from snn.plugins import get_registry
    from snn.surrogate import Sigmoid

    return get_registry().model(model).config(Sigmoid(alpha=4.0).spec)


def bytes_per_step(config: Any, itemsize: int) -> dict[str, int]:
    """Bytes per neuron-step each phase must move, from the configuration's kernel plan."""
    from snn.models import kernel_plan

    plan = kernel_plan(config)
    saved = 4 * len(plan.saved_states)
    x_saved = itemsize if plan.save_input else 0
    return {
        "forward": 2 * itemsize + saved + x_saved,
        "backward": saved + x_saved + 2 * itemsize,
        "inference": 2 * itemsize,
    }


def fits(device: torch.device, steps: int, n: int, itemsize: int) -> bool:
    """Whether about ten ``[T, N]`` tensors fit in the free memory (torch's backward needs most)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return 10 * steps * n * max(itemsize, 4) < 0.9 * free


def measure(
    backend: str, kernel: Callable[..., Any], model: str, dtype: torch.dtype, steps: int, n: int,
    device: torch.device, timer: Timer, copy_gbps: float,
) -> list[Record]:
    """Forward (with grad), backward and inference of one kernel on ``[T, N]`` random input."""
    name = str(dtype).replace("torch.", "")
    itemsize = torch.empty((), dtype=dtype).element_size()
    elements = steps * n
    if not fits(device, steps, n, itemsize):
        return [Record(backend, model, name, steps, n, phase, None, None, None, "skipped: not enough free memory")
                for phase in ("forward", "backward", "inference")]
    config = make_config(model)
    moved = bytes_per_step(config, itemsize)
    x = (torch.rand((steps, n), device=device, dtype=torch.float32) * 1.2).to(dtype).requires_grad_()
    initial = config.model.initial_values(config.hyper)
    states = tuple(torch.full((n,), initial[s], device=device, dtype=dtype) for s in config.model.state_names)
    # learnable parameters at 0 (PLIF: decay sigmoid(0) = 1/2)
    learnables = tuple(torch.zeros((), device=device, requires_grad=True) for _ in config.model.learnables)
    grad_spike = torch.rand((steps, n), device=device, dtype=torch.float32).to(dtype)
    inputs = [x, *learnables]
    records = []

    def row(phase: str, ms: float) -> Record:
        gbps = moved[phase] * elements / (ms * 1e-3) / 1e9
        return Record(backend, model, name, steps, n, phase, ms, gbps, gbps / copy_gbps)

    def run() -> Any:
        return kernel(x, states, config, learnables=learnables)

    try:
        records.append(row("forward", timer.median_ms(run)))
        spikes = run()[0]
        backward_ms = timer.median_ms(
            lambda: torch.autograd.grad(spikes, inputs, grad_outputs=grad_spike, retain_graph=True)
        )
        records.append(row("backward", backward_ms))
        spikes = None  # free the saved state before timing inference
        with torch.no_grad():
            records.append(row("inference", timer.median_ms(run)))
    except Exception as exc:  # one failing contender must not end the table
        note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        done = {r.phase for r in records}
        records += [Record(backend, model, name, steps, n, phase, None, None, None, note)
                    for phase in ("forward", "backward", "inference") if phase not in done]
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records


# -- output ------------------------------------------------------------------------------------


def format_table(records: list[Record], copy_gbps: float) -> str:
    """A markdown table; ``vs torch`` is the torch backend's time over this one's."""
    baseline = {(r.model, r.dtype, r.T, r.N, r.phase): r.median_ms for r in records if r.backend == "torch"}
    lines = [
        f"device-to-device copy: {copy_gbps:.4g} GB/s (read + write)",
        "",
        "| model | dtype | T | N | phase | backend | median ms | GB/s | of copy BW | vs torch |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        if r.median_ms is None:
            lines.append(f"| {r.model} | {r.dtype} | {r.T} | {r.N} | {r.phase} | {r.backend} | {r.note} | | | |")
            continue
        base = baseline.get((r.model, r.dtype, r.T, r.N, r.phase))
        ratio = f"{base / r.median_ms:.2f}x" if base else ""
        lines.append(
            f"| {r.model} | {r.dtype} | {r.T} | {r.N} | {r.phase} | {r.backend} | {r.median_ms:.3f} | "
            f"{r.gbps:.4g} | {100 * r.copy_fraction:.3g}% | {ratio} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one size (T=32, N=2**22) instead of the grid")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (checks the script only)")
    parser.add_argument("--json", metavar="PATH", help="also write the records and metadata as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 10)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated subset of backends to run (e.g. torch,triton,spikingjelly)")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of registered neuron models (default: every one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status."""
    args = parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        sizes_t, sizes_n, warmup, repeats, copy_bytes = DRY_T, DRY_N, 1, args.repeats or 2, 1 << 20
    else:
        if not torch.cuda.is_available():
            print("gpu_bench: no CUDA device here; use --dry-run to check the script on CPU", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        sizes_t, sizes_n = (QUICK_T, QUICK_N) if args.quick else (FULL_T, FULL_N)
        warmup, repeats, copy_bytes = 3, args.repeats or 10, 1 << 31
    timer = Timer(device, warmup, repeats)
    from snn.plugins import get_registry

    registered = sorted(get_registry().models)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else registered
    unknown = sorted(set(models) - set(registered))
    if unknown:
        print(f"gpu_bench: --models: unknown models {unknown}; registered: {registered}", file=sys.stderr)
        return 2
    contenders, notes = snn_kernels(device, args.dry_run, models)
    sj_name, sj_kernel, sj_note = spikingjelly_kernels(device)
    notes.append(sj_note)
    if sj_kernel is not None:
        contenders[sj_name] = sj_kernel
    if args.backends:
        wanted = {name.strip() for name in args.backends.split(",") if name.strip()}
        contenders = {name: get for name, get in contenders.items()
                      if name in wanted or name.split("[")[0] in wanted}
    copy_gbps = copy_bandwidth(device, timer, copy_bytes)
    cases = [(model, torch.float32) for model in models] + [("lif", torch.float16)] * ("lif" in models)
    records: list[Record] = []
    began = time.perf_counter()
    skipped: set[tuple[str, str]] = set()
    for model, dtype in cases:
        for steps in sizes_t:
            for n in sizes_n:
                for name, get in contenders.items():
                    try:
                        kernel = get(model)
                    except Exception as exc:
                        if (name, model) not in skipped:
                            skipped.add((name, model))
                            notes.append(f"{name}/{model}: {type(exc).__name__}: {exc}")
                        continue
                    records += measure(name, kernel, model, dtype, steps, n, device, timer, copy_gbps)
    elapsed = time.perf_counter() - began
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# multi-step neuron kernels on {device_name} ({elapsed:.0f} s)\n")
    print(format_table(records, copy_gbps))
    if notes:
        print("\nnotes:\n" + "\n".join(f"- {note}" for note in notes))
    if args.json:
        payload = {
            "device": device_name, "torch": torch.__version__, "copy_gbps": copy_gbps,
            "dry_run": args.dry_run, "seconds": elapsed, "notes": notes,
            "records": [asdict(r) for r in records],
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

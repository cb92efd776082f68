"""Multi-step LIF on CPU: snn's torch backend against SpikingJelly's ``LIFNode(step_mode='m')``.

Both neurons use the defaults (``tau=2``, hard reset to 0, ``Sigmoid(alpha=4)``), float32,
input ``[T, N]`` (default ``T=16``, ``N=2**18``), in the same process. Measured, as medians of
``repeats`` runs after two warm-up runs (the two libraries alternate so that background load
hits both alike):

- *train*: a forward pass with gradients (the input requires grad) plus
  ``spikes.backward(grad)``;
- *infer*: the forward pass under :func:`torch.no_grad`;
- *saved*: the bytes autograd keeps for backward after a training forward, counted with
  :func:`torch.autograd.graph.saved_tensors_hooks` over distinct storages.

SpikingJelly 2.0.0 picks its implementation itself (``spikingjelly/_ops``): on CPU the LIF
operator dispatches to its torch reference, a Python loop over time whose steps are recorded by
autograd, which is what a user gets by default; that is what is measured here. When
spikingjelly is not importable only snn's figures are printed, with a note.

Run ``python benchmarks/bench_lif_cpu.py [--T 16] [--N 262144] [--repeats 7] [--threads 2]``;
``run(T, N, repeats)`` returns the rows for reuse (e.g. by ``snn bench``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["run", "format_table", "saved_bytes", "main"]


def saved_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes of the distinct storages autograd saves while ``fn()`` runs, and its result."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return sum(storages.values()), result


def _contenders() -> tuple[list[tuple[str, Callable[[], torch.nn.Module]]], str | None]:
    from snn import neuron

    contenders: list[tuple[str, Callable[[], torch.nn.Module]]] = [
        ("snn torch", lambda: neuron.LIFNode(step_mode="m", backend="torch")),
    ]
    try:
        import spikingjelly
        from spikingjelly.activation_based import neuron as sj_neuron
    except Exception as exc:  # optional reference
        return contenders, f"spikingjelly is not importable ({type(exc).__name__}: {exc}); only snn is measured"
    version = getattr(spikingjelly, "__version__", None)
    if version is None:
        try:
            import importlib.metadata

            version = importlib.metadata.version("spikingjelly")
        except Exception:
            version = "?"
    contenders.append((f"spikingjelly {version}", lambda: sj_neuron.LIFNode(step_mode="m")))
    return contenders, None


def run(T: int = 16, N: int = 2**18, repeats: int = 7, *, seed: int = 0) -> list[dict[str, Any]]:
    """Time both neurons and count their saved bytes.

    Args:
        T: time steps.
        N: neurons.
        repeats: timed runs per measurement (median reported), after two warm-up runs.
        seed: seed of the input.

    Returns:
        One dict per contender: ``name``, ``train_ms``, ``infer_ms``, ``saved_bytes`` and,
        relative to the first row (snn), ``train_speedup`` / ``infer_speedup`` (this row's time
        over snn's: > 1 means snn is faster) and ``saved_ratio`` (snn's bytes over this row's),
        plus ``spikes_match`` (same spikes as snn) and ``note`` when spikingjelly is missing.

    Raises:
        ValueError: non-positive ``T``, ``N`` or ``repeats``.
    """
    for name, value in (("T", T), ("N", N), ("repeats", repeats)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((T, N), generator=gen) * 1.5 + 0.5
    grad = torch.randn((T, N), generator=gen)
    contenders, note = _contenders()
    modules = [make() for _, make in contenders]

    def train(module: torch.nn.Module) -> None:
        module.reset()
        inp = x.detach().requires_grad_()
        module(inp).backward(grad)

    def infer(module: torch.nn.Module) -> None:
        module.reset()
        with torch.no_grad():
            module(x)

    times: dict[str, list[list[float]]] = {"train": [[] for _ in modules], "infer": [[] for _ in modules]}
    for what, step in (("train", train), ("infer", infer)):
        for _ in range(2):
            for module in modules:
                step(module)
        for _ in range(repeats):
            for i, module in enumerate(modules):
                start = time.perf_counter()
                step(module)
                times[what][i].append(time.perf_counter() - start)

    rows: list[dict[str, Any]] = []
    reference_spikes = None
    for i, ((name, _), module) in enumerate(zip(contenders, modules)):
        module.reset()
        nbytes, spikes = saved_bytes(lambda m=module: m(x.detach().requires_grad_()))
        spikes = spikes.detach()
        if reference_spikes is None:
            reference_spikes = spikes
        rows.append({
            "name": name,
            "T": T,
            "N": N,
            "threads": torch.get_num_threads(),
            "train_ms": statistics.median(times["train"][i]) * 1e3,
            "infer_ms": statistics.median(times["infer"][i]) * 1e3,
            "saved_bytes": nbytes,
            "spikes_match": bool(torch.equal(spikes, reference_spikes)),
        })
    first = rows[0]
    for row in rows:
        row["train_speedup"] = row["train_ms"] / first["train_ms"]
        row["infer_speedup"] = row["infer_ms"] / first["infer_ms"]
        row["saved_ratio"] = first["saved_bytes"] / row["saved_bytes"] if row["saved_bytes"] else float("nan")
        if note:
            row["note"] = note
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table (speed-ups and ratios are snn relative to each row)."""
    header = (
        f"{'implementation':<22} {'train ms':>9} {'snn x':>6} {'infer ms':>9} {'snn x':>6} "
        f"{'saved MiB':>10} {'snn/this':>8} {'spikes==':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['name']:<22} {row['train_ms']:>9.2f} {row['train_speedup']:>6.2f} {row['infer_ms']:>9.2f} "
            f"{row['infer_speedup']:>6.2f} {row['saved_bytes'] / 2**20:>10.2f} {row['saved_ratio']:>8.2f} "
            f"{str(row['spikes_match']):>8}"
        )
    if rows:
        first = rows[0]
        lines.append(
            f"T={first['T']}, N={first['N']}, float32, CPU, {first['threads']} threads; medians. 'snn x' = this "
            "row's time / snn's (>1: snn faster); 'snn/this' = snn's saved bytes / this row's."
        )
        if "note" in first:
            lines.append(f"note: {first['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=16, help="time steps (default 16)")
    parser.add_argument("--N", type=int, default=2**18, help="neurons (default 2**18)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(format_table(run(args.T, args.N, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

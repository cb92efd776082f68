"""What snn adds on top of torch: import time, plugin-manager build, and per-call dispatch cost.

Run from the repository root with the project's environment::

    python benchmarks/bench_import_and_dispatch.py [--runs 7] [--number 200000]

Import times are measured in fresh subprocesses (one per run, median of ``--runs``): the time of
``import torch`` alone, and what ``import snn``, ``import snn.functional`` and the first
``get_registry()`` (building the plugin manager, loading installed plugins) add after it. The
reference library's ``import spikingjelly.activation_based.functional`` is timed the same way
when it is installed. Dispatch costs are per call, measured with :mod:`timeit` after first use,
against a plain ``dict`` lookup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import timeit

__all__ = ["measure_imports", "measure_dispatch", "main"]

_IMPORT_PROBE = r"""
import json, sys, time
stages = {}
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
stages["import torch"] = t1 - t0
target = sys.argv[1]
if target == "snn":
    import snn
    t2 = time.perf_counter()
    import snn.functional
    t3 = time.perf_counter()
    from snn.plugins import get_registry
    get_registry()
    t4 = time.perf_counter()
    stages["+ import snn"] = t2 - t1
    stages["+ import snn.functional"] = t3 - t2
    stages["+ first get_registry() (plugins loaded)"] = t4 - t3
    stages["plugins"] = sorted(get_registry().plugins)
else:
    import spikingjelly.activation_based.functional
    stages["+ import spikingjelly...functional (reference)"] = time.perf_counter() - t1
print(json.dumps(stages))
"""


def _probe(target: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, target], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_imports(runs: int) -> tuple[dict[str, float], list[str]]:
    """Median seconds of each import stage over ``runs`` fresh interpreters, and the plugins seen."""
    samples: dict[str, list[float]] = {}
    plugins: list[str] = []
    targets = ["snn"]
    try:
        _probe("reference")
        targets.append("reference")
    except subprocess.CalledProcessError:
        pass
    for _ in range(runs):
        for target in targets:
            for stage, value in _probe(target).items():
                if stage == "plugins":
                    plugins = list(value)  # type: ignore[arg-type]  # the 'plugins' entry is a list of names
                    continue
                key = (
                    stage
                    if not (stage == "import torch" and target != "snn")
                    else "import torch (reference run)"
                )
                samples.setdefault(key, []).append(float(value))  # type: ignore[arg-type]  # every other entry is a number
    return {stage: statistics.median(values) for stage, values in samples.items()}, plugins


def measure_dispatch(number: int, repeat: int = 5) -> dict[str, float]:
    """Best-of-``repeat`` nanoseconds per call of each lookup, after first use."""
    import torch

    from snn.neuron import LIFNode
    from snn.plugins import get_registry

    registry = get_registry()
    registry.kernel("torch", "multi_step")  # first use: imports and caches the kernel
    plain = {name: item for name, item in registry.strategies.items()}
    kernels = {("torch", "multi_step"): registry.kernel("torch", "multi_step")}
    node = LIFNode(step_mode="m")
    config = node.neuron_config()
    x = torch.zeros(2, 3)
    node._dispatch.kernel("torch", "multi_step", config, x)  # a neuron's per-call lookup, warmed up
    cases = {
        'plain dict lookup d["loop"]': lambda: plain["loop"],
        'plain dict lookup d[("torch", "multi_step")]': lambda: kernels[("torch", "multi_step")],
        'registry.strategy("loop")': lambda: registry.strategy("loop"),
        'get_registry().strategy("loop")': lambda: get_registry().strategy("loop"),
        'registry.kernel("torch", "multi_step")': lambda: registry.kernel("torch", "multi_step"),
        'get_registry().kernel("torch", "multi_step")': lambda: get_registry().kernel("torch", "multi_step"),
        "neuron: KernelDispatch.kernel(...) (cached)": lambda: node._dispatch.kernel("torch", "multi_step", config, x),
        "neuron: neuron_config() (cached)": node.neuron_config,
    }
    results = {}
    for label, call in cases.items():
        best = min(timeit.repeat(call, number=number, repeat=repeat))
        results[label] = best / number * 1e9
    return results


def _table(title: str, unit: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    lines = [title, f"  {'measurement'.ljust(width)}  {unit}", f"  {'-' * width}  {'-' * len(unit)}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print two tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=7, help="fresh interpreters per import measurement (median)"
    )
    parser.add_argument("--number", type=int, default=200_000, help="calls per timeit repetition")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.number < 1:
        parser.error("--runs and --number must be >= 1")

    imports, plugins = measure_imports(args.runs)
    print(
        _table(
            f"Import cost (median of {args.runs} fresh interpreters; plugins: {', '.join(plugins)})",
            "ms",
            [(stage, f"{seconds * 1e3:8.1f}") for stage, seconds in imports.items()],
        )
    )
    print()
    dispatch = measure_dispatch(args.number)
    base = dispatch['plain dict lookup d["loop"]']
    print(
        _table(
            f"Dispatch cost per call after first use (best of 5 x {args.number} calls)",
            "ns/call   vs dict",
            [(label, f"{ns:7.1f}   {ns / base:5.2f}x") for label, ns in dispatch.items()],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

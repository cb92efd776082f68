"""Peak activation memory and time of one OTTT training call versus BPTT, on CPU.

Network: fully connected 512-1024-1024-10 with two LIF layers, batch 128, per-step
cross-entropy on a rate read-out, SGD. Compared at T=8 and T=64 (``--steps``):

- ``ottt``: ``OTTTSequential(Linear, OTTTLIFNode, Linear, OTTTLIFNode, Linear)`` trained by the
  registered ``ottt`` learner (``snn.functional.ottt_online_training``, ``online=True``): one
  forward and one spatial backward per step, weights updated every step.
- ``bptt``: the same layers with multi-step ``LIFNode`` (torch backend, the loop over time),
  the loss summed over all steps, one backward through time, one optimizer step.

Memory method. The primary figure is the peak of the bytes held by tensors that autograd
saved for backward: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor when it is
saved; the pack hook records its storage (keyed by the storage's data pointer, so views of
one storage count once) with a reference count and returns a small handle whose finalizer
drops the count when autograd frees the saved tensor (after backward, or when the graph is
destroyed). The live total of distinct storages is tracked, and its maximum over the whole
training call is reported. The model's parameters and the input batch are excluded (they are the
same for both methods and live regardless; the per-step input slices the first layer saves are
views of the input's storage). These saved tensors are the activations that BPTT must keep over
time; the transient tensors of one step come on top and do not depend on T.

The second figure is the growth of the process's peak resident set (``ru_maxrss``) during the
call, measured in a fresh process per configuration after a one-step warm-up. It is coarser (it
includes transient tensors) and depends on the allocator, so it is measured twice:

- ``rss_fixed_mb``: with ``MALLOC_MMAP_THRESHOLD_=65536``, which fixes glibc's mmap threshold:
  every buffer of 64 KiB or more gets its own mapping and returns to the system when freed.
- ``rss_default_mb``: with glibc's default, *adaptive* threshold. After the first large buffers
  are freed glibc raises the threshold, later large buffers come from the heap, and the small
  long-lived tensors of each step (the outputs kept for the result) pin the heap's top, so the
  peak RSS of a per-step loop grows with T although no tensor stays alive: an allocator effect,
  not a leak (OTTT's saved-tensor peak, next to it, does not grow). Compare the two columns
  before reporting a leak; set ``MALLOC_MMAP_THRESHOLD_`` (or use another allocator, e.g.
  jemalloc or tcmalloc) to see what the program really keeps.

Each configuration runs in fresh subprocesses: two measure memory (one per allocator setting),
one time (after one full-size warm-up call, the median wall-clock time of ``--repeats`` calls,
divided by the batch size; ``--memory-only`` skips it). Run
``python benchmarks/bench_online.py`` (``--help`` for options); the allocator columns are
glibc's (on other C libraries both show that library's behaviour).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["SavedTensorPeak", "build_ottt", "build_bptt", "main"]

SIZES = (512, 1024, 1024, 10)
#: glibc's mmap threshold for the ``rss_fixed_mb`` column (bytes).
FIXED_MMAP_THRESHOLD = 65536


class SavedTensorPeak:
    """Track the live and peak bytes of tensors saved by autograd (distinct storages).

    Use as a context manager around forward and backward passes.

    Args:
        exclude: tensors whose storages are not counted (e.g. the model's parameters).
    """

    def __init__(self, exclude: Iterable[Any] = ()) -> None:
        import torch

        self._torch = torch
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._counts: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks: Any = None

    def _release(self, key: int) -> None:
        self._counts[key] -= 1
        if self._counts[key] == 0:
            del self._counts[key]
            self.current -= self._sizes.pop(key)

    def _pack(self, tensor: Any) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        nbytes = storage.nbytes()
        if key in self._excluded or nbytes == 0:
            return tensor
        if key in self._counts:
            self._counts[key] += 1
        else:
            self._counts[key] = 1
            self._sizes[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        return _Handle(tensor, weakref.WeakMethod(self._release), key)

    @staticmethod
    def _unpack(packed: Any) -> Any:
        return packed.tensor if isinstance(packed, _Handle) else packed

    def __enter__(self) -> SavedTensorPeak:
        self._hooks = self._torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


class _Handle:
    """A saved tensor plus the callback that un-counts it when autograd drops it."""

    __slots__ = ("tensor", "_release", "_key")

    def __init__(self, tensor: Any, release: Any, key: int) -> None:
        self.tensor = tensor
        self._release = release
        self._key = key

    def __del__(self) -> None:
        release = self._release()
        if release is not None:
            release(self._key)


def build_ottt() -> Any:
    """The OTTT network (single-step modules in an ``OTTTSequential``)."""
    from snn import layer
    from snn_online import OTTTLIFNode, OTTTSequential

    return OTTTSequential(
        layer.Linear(SIZES[0], SIZES[1]), OTTTLIFNode(),
        layer.Linear(SIZES[1], SIZES[2]), OTTTLIFNode(),
        layer.Linear(SIZES[2], SIZES[3]),
    )


def build_bptt() -> Any:
    """The BPTT network (multi-step LIF neurons on the torch backend, looping over time)."""
    import torch

    from snn import layer, neuron

    return torch.nn.Sequential(
        layer.Linear(SIZES[0], SIZES[1]), neuron.LIFNode(step_mode="m", backend="torch"),
        layer.Linear(SIZES[1], SIZES[2]), neuron.LIFNode(step_mode="m", backend="torch"),
        layer.Linear(SIZES[2], SIZES[3]),
    )


def _train_call(method: str, net: Any, optimizer: Any, x: Any, labels: Any) -> None:
    import torch.nn.functional as F

    from snn import functional

    if method == "ottt":
        functional.ottt_online_training(net, optimizer, x, labels, F.cross_entropy, online=True)
    else:
        x_seq = x.transpose(0, 1)  # [T, B, 512]
        optimizer.zero_grad()
        y_seq = net(x_seq)
        loss = sum(F.cross_entropy(y_seq[t], labels[:, t]) for t in range(y_seq.shape[0]))
        loss.backward()
        optimizer.step()
    functional.reset_net(net)


def _setup(method: str, steps: int, batch: int, threads: int) -> tuple[Any, Any, Any, Any]:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    net = build_ottt() if method == "ottt" else build_bptt()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x = (torch.rand(batch, steps, SIZES[0]) < 0.3).float()
    labels = torch.randint(0, SIZES[-1], (batch, steps))
    return net, optimizer, x, labels


def _worker_memory(method: str, steps: int, batch: int, threads: int) -> dict[str, Any]:
    """Saved-tensor peak and peak-RSS growth of one training call (under the caller's allocator settings)."""
    import resource

    net, optimizer, x, labels = _setup(method, steps, batch, threads)
    # A one-sample, one-step warm-up call pays for lazy imports and the plugin registry, so the
    # measured call's peak-RSS growth is about the training call itself.
    _train_call(method, net, optimizer, x[:1, :1], labels[:1, :1])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracker = SavedTensorPeak(exclude=[*net.parameters(), x])
    with tracker:
        _train_call(method, net, optimizer, x, labels)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if tracker.current != 0:
        raise RuntimeError(f"saved-tensor tracker ended with {tracker.current} bytes still counted")
    return {
        "saved_peak_mb": tracker.peak / 2**20,
        "rss_mb": (rss_after - rss_before) / 1024,  # ru_maxrss is in KiB on Linux
    }


def _worker_time(method: str, steps: int, batch: int, threads: int, repeats: int) -> dict[str, Any]:
    """Median wall time per sample of ``repeats`` training calls after one full-size warm-up call."""
    net, optimizer, x, labels = _setup(method, steps, batch, threads)
    _train_call(method, net, optimizer, x, labels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _train_call(method, net, optimizer, x, labels)
        times.append(time.perf_counter() - start)
    return {"ms_per_sample": statistics.median(times) / batch * 1e3}


def _run_worker(kind: str, method: str, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", kind, method, str(steps),
        "--batch", str(args.batch), "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]
    env = dict(os.environ)
    if kind == "memory-fixed":
        env["MALLOC_MMAP_THRESHOLD_"] = str(FIXED_MMAP_THRESHOLD)
        command[command.index(kind)] = "memory"
    elif kind == "memory-default":
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
        command[command.index(kind)] = "memory"
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in subprocesses (memory, then time) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 64], help="sequence lengths T")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier figures on a shared machine)")
    parser.add_argument("--memory-only", action="store_true", help="skip the timing runs")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, method, steps = args.worker[0], args.worker[1], int(args.worker[2])
        if kind == "memory":
            result = _worker_memory(method, steps, args.batch, args.threads)
        else:
            result = _worker_time(method, steps, args.batch, args.threads, args.repeats)
        print(json.dumps(result))
        return 0

    rows = []
    for method in ("ottt", "bptt"):
        for steps in args.steps:
            row: dict[str, Any] = {"method": method, "steps": steps}
            fixed = _run_worker("memory-fixed", method, steps, args)
            default = _run_worker("memory-default", method, steps, args)
            row.update(saved_peak_mb=fixed["saved_peak_mb"], rss_fixed_mb=fixed["rss_mb"], rss_default_mb=default["rss_mb"])
            row.update(_run_worker("time", method, steps, args) if not args.memory_only else {"ms_per_sample": None})
            rows.append(row)

    print(f"network {'-'.join(map(str, SIZES))}, batch {args.batch}, CPU, {args.threads} threads")
    print(f"{'':<11} {'saved-tensor':>12}  {'peak RSS growth MiB':^27}")
    print(f"{'method':<6} {'T':>4} {'peak MiB':>12}  {'fixed mmap':>12}  {'glibc default':>13}  {'ms/sample':>10}")
    for row in rows:
        timing = "-" if row["ms_per_sample"] is None else f"{row['ms_per_sample']:.3f}"
        print(
            f"{row['method']:<6} {row['steps']:>4} {row['saved_peak_mb']:>12.1f}  "
            f"{row['rss_fixed_mb']:>12.1f}  {row['rss_default_mb']:>13.1f}  {timing:>10}"
        )
    print(
        "saved-tensor peak: what autograd keeps for backward (the method's memory). peak RSS growth: "
        f"the process's peak resident set during the call, with MALLOC_MMAP_THRESHOLD_={FIXED_MMAP_THRESHOLD} "
        "(fixed mmap) and with glibc's adaptive threshold (default), under which a per-step loop's RSS "
        "grows with T although no tensor stays alive: not a leak (see the module docstring)."
    )
    by_key = {(r["method"], r["steps"]): r for r in rows}
    low, high = min(args.steps), max(args.steps)
    if low != high:
        for method in ("ottt", "bptt"):
            ratio = by_key[(method, high)]["saved_peak_mb"] / by_key[(method, low)]["saved_peak_mb"]
            print(f"{method}: saved peak at T={high} / T={low} = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

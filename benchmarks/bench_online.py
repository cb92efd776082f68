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
views of the input's storage). These saved tensors are the activations that BPTT must keep over time;
the transient tensors of one step come on top and do not depend on T. A second figure,
``rss_mb``, is the growth of the process's peak resident set (``ru_maxrss``) during the call,
measured in a fresh process per configuration after a one-step warm-up (coarser: includes
transient tensors and allocator effects). The workers run with glibc's
``MALLOC_MMAP_THRESHOLD_=65536``: with glibc's default *dynamic* threshold, large tensor buffers
move from mmap to the heap after the first frees, and small long-lived tensors (the per-step
outputs) then pin the heap, so RSS creeps up by ~0.4 MiB per step without any tensor being
alive (measured: flat with the fixed threshold, 431 MiB at steps 16..64 of T=64).

Each configuration runs in two fresh subprocesses: one measures memory, the other time (after
one full-size warm-up call, the median wall-clock time of ``--repeats`` calls, divided by the
batch size). Run ``python benchmarks/bench_online.py`` (``--help`` for options).
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
    """Saved-tensor peak and peak-RSS growth of one training call (run with the fixed mmap threshold)."""
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
    if kind == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
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
            row = {"method": method, "steps": steps}
            row.update(_run_worker("memory", method, steps, args))
            row.update(_run_worker("time", method, steps, args))
            rows.append(row)

    print(f"network {'-'.join(map(str, SIZES))}, batch {args.batch}, CPU, {args.threads} threads")
    print(f"{'method':<6} {'T':>4} {'saved peak MiB':>15} {'peak RSS growth MiB':>20} {'ms/sample':>10}")
    for row in rows:
        print(
            f"{row['method']:<6} {row['steps']:>4} {row['saved_peak_mb']:>15.1f} "
            f"{row['rss_mb']:>20.1f} {row['ms_per_sample']:>10.3f}"
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

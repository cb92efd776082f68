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
training call is reported. Model parameters are excluded (they are the same for both methods
and live regardless). These saved tensors are the activations that BPTT must keep over time;
the transient tensors of one step come on top and do not depend on T. A second figure,
``rss_mb``, is the growth of the process's peak resident set (``ru_maxrss``) during the call,
measured in a fresh process per configuration (includes allocator effects; coarser).

Each configuration runs in its own subprocess. Run ``python benchmarks/bench_online.py``
(``--help`` for options). Timing figures are wall-clock medians over ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import json
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


def _worker(method: str, steps: int, batch: int, repeats: int, threads: int) -> dict[str, Any]:
    import resource

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    net = build_ottt() if method == "ottt" else build_bptt()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x = (torch.rand(batch, steps, SIZES[0]) < 0.3).float()
    labels = torch.randint(0, SIZES[-1], (batch, steps))

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracker = SavedTensorPeak(exclude=list(net.parameters()))
    with tracker:
        _train_call(method, net, optimizer, x, labels)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if tracker.current != 0:
        raise RuntimeError(f"saved-tensor tracker ended with {tracker.current} bytes still counted")

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _train_call(method, net, optimizer, x, labels)
        times.append(time.perf_counter() - start)
    return {
        "method": method,
        "steps": steps,
        "saved_peak_mb": tracker.peak / 2**20,
        "rss_mb": (rss_after - rss_before) / 1024,  # ru_maxrss is in KiB on Linux
        "ms_per_sample": statistics.median(times) / batch * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in a subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 64], help="sequence lengths T")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        method, steps = args.worker[0], int(args.worker[1])
        print(json.dumps(_worker(method, steps, args.batch, args.repeats, args.threads)))
        return 0

    rows = []
    for method in ("ottt", "bptt"):
        for steps in args.steps:
            command = [
                sys.executable, __file__, "--worker", method, str(steps),
                "--batch", str(args.batch), "--repeats", str(args.repeats), "--threads", str(args.threads),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

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

"""Timing another checkout of snn in the same run: ``snn bench --baseline PATH``.

A change to the torch backend is judged against the code it replaces, on the same machine at
the same moment. Two versions of the ``snn`` package cannot share one process, so the baseline
(a git worktree or any checkout, ``PATH/packages/snn-core/src``) runs in a worker process that
``snn bench`` drives one sample at a time, taking turns with the in-process candidates; the rows
it yields are labelled ``torch@baseline``. The worker uses only what every version offers: a
neuron class of :mod:`snn.neuron` built with ``step_mode="m", backend="torch"``, the same seeded
inputs (:func:`snn.bench.measure._inputs`'s recipe, rebuilt there) and the same timing steps.

Example::

    git worktree add /tmp/snn-main main
    snn bench --models lif,plif --N 262144,4194304 --baseline /tmp/snn-main
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["BASELINE_LABEL", "BaselineWorker", "checkout_source", "spike_checksum"]

#: The backend label of the baseline's rows.
BASELINE_LABEL = "torch@baseline"

_WORKER = r"""
import json, sys, time
import torch

request = json.loads(sys.stdin.readline())
torch.set_num_threads(request["threads"])
import snn
from snn import neuron

device = torch.device(request["device"])
dtype = getattr(torch, request["dtype"])
generator = torch.Generator().manual_seed(request["seed"])
T, N = request["T"], request["N"]
x_seq = (torch.rand(T, N, generator=generator) * 1.6).to(device=device, dtype=dtype)
grad_seq = torch.randn(T, N, generator=generator).to(device=device, dtype=dtype)
x_leaf = x_seq.detach().clone().requires_grad_(True)
module = getattr(neuron, request["cls"])(step_mode="m", backend="torch").to(device=device, dtype=dtype)

def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)

def reset():
    for m in module.modules():
        if callable(getattr(m, "reset", None)) and hasattr(m, "_memories"):
            m.reset()

print(json.dumps({"snn": snn.__file__}), flush=True)
for line in sys.stdin:
    x_leaf.grad = None
    reset(); sync()
    start = time.perf_counter()
    spikes = module(x_leaf)
    sync(); middle = time.perf_counter()
    spikes.backward(grad_seq)
    sync(); end = time.perf_counter()
    del spikes
    reset()
    with torch.no_grad():
        sync(); start_inference = time.perf_counter()
        inferred = module(x_seq)
        sync(); end_inference = time.perf_counter()
    reset()
    flat = inferred.reshape(-1).double()
    weights = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device).remainder(997)
    print(json.dumps([middle - start, end - middle, end_inference - start_inference,
                      float(flat.sum()), float((flat * weights).sum())]), flush=True)
"""


def checkout_source(path: str | Path) -> Path:
    """The ``packages/snn-core/src`` folder of the snn checkout at ``path``.

    Raises:
        ValueError: ``path`` holds no ``packages/snn-core/src/snn``.
    """
    source = Path(path).expanduser().resolve() / "packages" / "snn-core" / "src"
    if not (source / "snn" / "__init__.py").is_file():
        raise ValueError(f"baseline: expected an snn checkout with packages/snn-core/src/snn, got {str(path)!r}")
    return source


def spike_checksum(spikes: torch.Tensor) -> torch.Tensor:
    """``[sum, sum(s_i * (i mod 997))]`` of a spike tensor (float64, on the CPU): what the baseline
    worker reports instead of its spikes."""
    flat = spikes.reshape(-1).double()
    weights = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device).remainder(997)
    return torch.stack([flat.sum(), (flat * weights).sum()]).cpu()


class BaselineWorker:
    """A worker process timing one neuron configuration of another snn checkout.

    Args:
        path: the checkout's root (with ``packages/snn-core/src``).
        class_name: the neuron class in :mod:`snn.neuron` (e.g. ``"LIFNode"``).
        T, N, dtype, device, seed: as :func:`snn.bench.measure.benchmark` uses them.

    Raises:
        ValueError: ``path`` has no ``packages/snn-core/src``.
        RuntimeError: the worker failed to start (the last line of its error output is
            included); :meth:`sample` raises the same when the worker fails later.
    """

    def __init__(self, path: str | Path, class_name: str, T: int, N: int, dtype: torch.dtype,
                 device: torch.device, seed: int) -> None:
        source = checkout_source(path)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(source) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["SNN_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the baseline's torch backend only
        # the worker's warnings go to a file, not a pipe: a pipe nobody reads until the worker
        # fails would fill up (64 KiB) and stop the worker mid-write while we wait for its answer
        self._errors = tempfile.TemporaryFile(mode="w+t")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errors, text=True, env=env,
        )
        request = {
            "cls": class_name, "T": T, "N": N, "dtype": str(dtype).removeprefix("torch."),
            "device": str(device), "seed": seed, "threads": torch.get_num_threads(),
        }
        hello = self._exchange(json.dumps(request))
        self.snn_file = str(hello["snn"])
        if not self.snn_file.startswith(str(source)):
            self.close()
            raise RuntimeError(f"baseline: the worker imported snn from {self.snn_file}, not from {source}")

    def _exchange(self, line: str) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        except BrokenPipeError:  # the worker ended before it read the request
            answer = ""
        if not answer:
            self._stop()
            self._errors.seek(0)
            last = self._errors.read().strip().splitlines()[-1:]
            self.close()
            raise RuntimeError(f"baseline worker failed: {last[0] if last else 'no output'}")
        return json.loads(answer)

    def sample(self) -> tuple[float, float, float, torch.Tensor]:
        """One timed run: forward, backward and inference seconds, and the spikes' checksum."""
        forward, backward, inference, total, weighted = self._exchange("sample")
        return forward, backward, inference, torch.tensor([total, weighted], dtype=torch.float64)

    def close(self) -> None:
        """Stop the worker and release its pipes and error file."""
        self._stop()
        for stream in (self._process.stdout, self._errors):
            if stream is not None:
                stream.close()

    def _stop(self) -> None:
        """End the worker: end of input, then a kill after 10 s."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:  # a worker that ended with our last request unread
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

"""Data-parallel ``snn train``: worker processes under ``torch.distributed``.

``snn train --nproc N`` starts ``N`` worker processes through PyTorch's elastic launcher (the
engine behind ``torchrun``): one rendezvous on this machine, no restarts, the workers monitored
so that one that dies ends the run. ``torchrun ... -m snn train`` starts the same workers on
one or several machines. Each worker finds its rank in the environment that the launcher sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins one
process group: gloo for CPU tensors, plus NCCL for CUDA tensors when CUDA is available.

Every worker draws the same global batches (same generators, same seed), encodes the whole
batch and keeps its contiguous share (:func:`share`); DDP averages the gradients. Rank 0 alone
evaluates, prints and writes files.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from snn.errors import SNNError

__all__ = [
    "COLLECTIVE_TIMEOUT_S",
    "DistributedContext",
    "WorkerFailedError",
    "DataParallelUnsupportedError",
    "launched_rank",
    "share",
    "init_worker",
    "launch",
]

#: Seconds a collective operation (a gradient all-reduce, the start-up broadcast) waits for the
#: other processes before failing; bounds how long a hung, not dead, peer can stall a run.
COLLECTIVE_TIMEOUT_S = 600.0
#: Seconds the launcher waits for the remaining workers to stop after one failed, before
#: killing them.
SHUTDOWN_TIMEOUT_S = 10


class WorkerFailedError(SNNError, RuntimeError):
    """A worker process of a data-parallel run died or raised.

    Attributes:
        failures: one line per failed worker (rank, pid, signal or error).
        tracebacks: the Python tracebacks the workers recorded, by rank.
    """

    def __init__(self, failures: Sequence[str], tracebacks: dict[int, str]) -> None:
        self.failures = tuple(failures)
        self.tracebacks = dict(tracebacks)
        super().__init__("worker process failed: " + "; ".join(self.failures))


class DataParallelUnsupportedError(SNNError, ValueError):
    """The learner cannot train data-parallel (``--nproc`` above 1): the message says why."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel group.

    Attributes:
        rank: global rank, ``0 .. world_size - 1``; rank 0 evaluates and writes.
        world_size: number of processes.
        local_rank: rank on this machine (the CUDA device index it uses).
        device: the device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def on(self, device: torch.device) -> DistributedContext:
        """The same context with another training device."""
        return replace(self, device=device)

    def share(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this process's share of ``n`` items (see :func:`share`)."""
        return share(n, self.rank, self.world_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """The sums over all processes of ``values`` (float64, on the CPU through gloo)."""
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (other ranks pass anything, e.g. ``None``)."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]


def share(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` items.

    The first ``n % world_size`` ranks get one item more than the others, so the shares differ
    by at most one and cover ``0 .. n - 1`` once, in order.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def launched_rank() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when a launcher started this process as one of
    several workers (``torchrun``, ``snn train --nproc``), else ``None``."""
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
    except (KeyError, ValueError):
        return None
    if world_size <= 1:
        return None
    return rank, world_size, int(os.environ.get("LOCAL_RANK", "0"))


def init_worker(timeout_s: float = COLLECTIVE_TIMEOUT_S) -> DistributedContext:
    """Join the process group described by the environment (see :func:`launched_rank`).

    Returns:
        The context, on the CPU (:meth:`DistributedContext.on` moves it to the training device).

    Raises:
        RuntimeError: not started by a launcher, or the group cannot be formed.
    """
    import torch.distributed as dist

    where = launched_rank()
    if where is None:
        raise RuntimeError("init_worker: this process was not started as one of several workers (WORLD_SIZE)")
    rank, world_size, local_rank = where
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(rank, world_size, local_rank)


def shutdown_worker() -> None:
    """Leave the process group, if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- the launcher --------------------------------------------------------------------------


def _loopback_interface() -> str | None:
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


@contextmanager
def _quiet_elastic_logs() -> Iterator[None]:
    """Silence torch's launcher logs: the failure is reported once, by :func:`launch`."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _describe_failures(failures: dict[int, Any]) -> tuple[list[str], dict[int, str]]:
    lines: list[str] = []
    tracebacks: dict[int, str] = {}
    # a worker killed by a signal is the cause; the others fail because it vanished
    for rank, failure in sorted(failures.items(), key=lambda item: (item[1].exitcode >= 0, item[0])):
        who = f"rank {rank} (pid {failure.pid})"
        if failure.exitcode < 0:
            lines.append(f"{who} was killed by signal {failure.signal_name()}")
            continue
        message = failure.message
        if isinstance(message, dict):
            text = str(message.get("message", "")).strip()
            trace = message.get("extraInfo", {}).get("py_callstack")
            if trace:
                tracebacks[rank] = str(trace)
        else:
            text = str(message or "").strip()
        if text and not text.startswith("To enable traceback"):
            lines.append(f"{who} raised {text}")
        else:
            lines.append(f"{who} exited with status {failure.exitcode}")
    return lines, tracebacks


def _restore_environment(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def launch(nproc: int, entrypoint: Callable[..., Any], *args: Any, monitor_interval_s: float = 0.2) -> None:
    """Run ``entrypoint(*args)`` in ``nproc`` worker processes on this machine, as torchrun does.

    The processes are started with the ``spawn`` method by PyTorch's elastic agent, after a
    c10d rendezvous on 127.0.0.1 at a free port; ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` are set for each. The agent checks the workers every
    ``monitor_interval_s`` seconds; when one dies or raises, the others are stopped (killed
    after :data:`SHUTDOWN_TIMEOUT_S` seconds) and nothing is restarted.

    Args:
        nproc: number of worker processes, >= 2.
        entrypoint: a module-level function (it is pickled by reference).
        *args: its arguments (pickled).
        monitor_interval_s: seconds between checks of the workers.

    Raises:
        WorkerFailedError: a worker died (signal), raised, or exited with a non-zero status;
            lists every failed worker, the killed ones first.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    previous_interface = os.environ.get("GLOO_SOCKET_IFNAME")
    interface = _loopback_interface()
    if interface is not None and previous_interface is None:
        os.environ["GLOO_SOCKET_IFNAME"] = interface  # one machine: the workers talk over the loopback
    with tempfile.TemporaryDirectory(prefix="snn-train-") as logs, _quiet_elastic_logs():
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=nproc,
            run_id=f"snn-train-{uuid.uuid4().hex[:12]}",
            rdzv_backend="c10d",
            rdzv_endpoint="127.0.0.1:0",
            max_restarts=0,
            monitor_interval=monitor_interval_s,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
            local_addr="127.0.0.1",
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        try:
            elastic_launch(config, entrypoint)(*args)
        except ChildFailedError as exc:
            lines, tracebacks = _describe_failures(exc.failures)
            raise WorkerFailedError(lines, tracebacks) from None
        except SignalException as exc:  # the launcher itself was interrupted (Ctrl-C, SIGTERM)
            raise WorkerFailedError([f"the launcher received {exc.sigval.name}; the workers were stopped"], {}) from None
        finally:
            _restore_environment("GLOO_SOCKET_IFNAME", previous_interface)

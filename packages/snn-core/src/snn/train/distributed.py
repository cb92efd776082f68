"""Data-parallel ``snn train``: worker processes under ``torch.distributed``.

``snn train --nproc N`` starts ``N`` worker processes on this machine (:func:`launch`): the
launcher hosts the rendezvous store, watches the workers, and ends the run with a report
naming the cause when one fails; nothing is restarted. ``torchrun ... -m snn train``
starts the same workers on one or several machines. Each worker finds its rank in the
environment that the launcher sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and joins one process group: gloo for CPU tensors, plus NCCL for CUDA tensors
when CUDA is available.

Every worker draws the same global batches (same generators, same seed), encodes the whole
batch and keeps its contiguous share (:func:`share`); DDP averages the gradients. Rank 0 alone
evaluates, prints and writes files.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn.errors import SNNError

__all__ = [
    "COLLECTIVE_TIMEOUT_S",
    "FAILURE_GRACE_S",
    "SHUTDOWN_TIMEOUT_S",
    "DistributedContext",
    "WorkerFailedError",
    "DataParallelUnsupportedError",
    "ProcessGroupError",
    "launched_rank",
    "local_world_size",
    "share",
    "init_worker",
    "report_failure",
    "launch",
    "WORKER_REPORT_ENV",
]

#: Seconds a collective operation (a gradient all-reduce, the start-up broadcast) waits for the
#: other processes before failing; bounds how long a hung, not dead, peer can stall a run.
COLLECTIVE_TIMEOUT_S = 600.0
#: Seconds the launcher waits for the remaining workers to stop after one failed, before
#: killing them.
SHUTDOWN_TIMEOUT_S = 10
#: Seconds the other workers get to end on their own after one failed, so that the report
#: names every worker that failed (the cause is not always the first to exit).
FAILURE_GRACE_S = 2.0
#: Seconds between the launcher's checks of the workers' exit statuses.
_POLL_S = 0.1
#: The launcher's address: ``--nproc`` workers run on this machine.
_HOST = "127.0.0.1"
#: ``prctl`` option: the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Environment variable that :func:`launch` sets in each worker: the file where the worker
#: leaves the reason it fails (see :func:`report_failure`).
WORKER_REPORT_ENV = "SNN_WORKER_REPORT_FILE"


class WorkerFailedError(SNNError, RuntimeError):
    """A worker process of a data-parallel run died or raised.

    Attributes:
        failures: one line per failed worker (rank, pid, signal or error), the likeliest
            cause first.
        tracebacks: the Python tracebacks the workers recorded, by rank.
        cause_rank: the rank of the first line's worker (``None`` when no worker failed, e.g.
            the launcher was interrupted).
    """

    def __init__(self, failures: Sequence[str], tracebacks: dict[int, str], cause_rank: int | None = None) -> None:
        self.failures = tuple(failures)
        self.tracebacks = dict(tracebacks)
        self.cause_rank = cause_rank
        super().__init__("worker process failed: " + "; ".join(self.failures))


class ProcessGroupError(SNNError, RuntimeError):
    """A worker could not join its process group (a port in use, rank 0 unreachable ...)."""


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


def _environment_int(name: str, low: int, high: int | None = None, default: int | None = None) -> int:
    """The integer in environment variable ``name``, in ``[low, high)``; ``ValueError`` naming it."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise ValueError(f"{name}: expected an integer set by the launcher (torchrun sets it), got nothing")
    try:
        value = int(text)
    except ValueError:
        value = None
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high - 1}"
    if value is None or value < low or (high is not None and value >= high):
        raise ValueError(f"{name}: expected {expected}, got {text!r}")
    return value


def launched_rank() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when a launcher started this process as one of
    several workers (``torchrun``, ``snn train --nproc``), else ``None``.

    ``WORLD_SIZE`` decides: unset or 1 means one process (a stray ``RANK`` is ignored).

    Raises:
        ValueError: ``WORLD_SIZE`` is not a positive integer, or above 1 with ``RANK`` missing
            or out of range (``0 <= RANK < WORLD_SIZE``), or ``LOCAL_RANK`` missing or malformed,
            naming the variable: otherwise every process would train alone into the same folder,
            or every worker of a machine on its first GPU.
    """
    if not os.environ.get("WORLD_SIZE", "").strip():
        return None
    world_size = _environment_int("WORLD_SIZE", 1)
    if world_size == 1:
        return None
    rank = _environment_int("RANK", 0, world_size)
    return rank, world_size, _environment_int("LOCAL_RANK", 0)


def local_world_size(world_size: int) -> int:
    """Worker processes on this machine: ``LOCAL_WORLD_SIZE`` when a launcher set it (torchrun
    on several machines), else ``world_size``."""
    return min(world_size, _environment_int("LOCAL_WORLD_SIZE", 1, default=world_size))


def init_worker(timeout_s: float = COLLECTIVE_TIMEOUT_S) -> DistributedContext:
    """Join the process group described by the environment (see :func:`launched_rank`).

    Returns:
        The context, on the CPU (:meth:`DistributedContext.on` moves it to the training device).

    Raises:
        ValueError: a rendezvous variable (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
            ``MASTER_ADDR``, ``MASTER_PORT``) is missing or malformed, naming it.
        RuntimeError: not started by a launcher.
        ProcessGroupError: the group cannot be formed (one line: the address and torch's first
            line).
    """
    import torch.distributed as dist

    where = launched_rank()
    if where is None:
        raise RuntimeError("init_worker: this process was not started as one of several workers (WORLD_SIZE)")
    rank, world_size, local_rank = where
    if not os.environ.get("MASTER_ADDR", "").strip():
        raise ValueError("MASTER_ADDR: expected the address of rank 0's machine (torchrun sets it), got nothing")
    _environment_int("MASTER_PORT", 1, 65536)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:  # DistNetworkError (a port in use, an unreachable rank 0) ...
        where_to = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ProcessGroupError(f"rank {rank} could not join the process group at {where_to}: {first_line}") from exc
    return DistributedContext(rank, world_size, local_rank)


def report_failure(message: str) -> bool:
    """In a worker started by :func:`launch`, leave ``message`` as the reason this worker fails.

    The launcher's :class:`WorkerFailedError` then names it (``rank 0 (pid 123): <message>``),
    so a worker that reports its failure need not print it: the run's error appears once.

    Returns:
        Whether the message was left; ``False`` outside such a worker (one process, or a worker
        started by ``torchrun``) or when the file cannot be written.
    """
    path = os.environ.get(WORKER_REPORT_ENV)
    if not path:
        return False
    try:
        Path(path).write_text(json.dumps({"message": message, "reported": True}))
    except OSError:
        return False
    return True


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


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this worker SIGTERM when the launcher dies (elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the launcher died before the request took effect
        os._exit(1)


def _worker_bootstrap(
    rank: int, nproc: int, port: int, parent_pid: int, error_file: str,
    entrypoint: Callable[..., Any], args: tuple[Any, ...],
) -> None:
    """The first function of a worker process: environment, then ``entrypoint(*args)``.

    When ``entrypoint`` returns or raises :class:`SystemExit` with an int status (or
    ``None``), the process flushes its standard streams and exits with that status (0 on
    return) at once. Another exception, or a :class:`SystemExit` with a message, is written to
    ``error_file`` (JSON: ``message``, and the ``traceback``) for the launcher, which prints it,
    and the process exits with status 1.
    """
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which stops the workers
    if hasattr(signal, "pthread_sigmask"):  # blocked by the launcher while it started this process
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
        "MASTER_ADDR": _HOST, "MASTER_PORT": str(port),
        # the launcher hosts the rendezvous store; every worker, rank 0 included, is its client
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",  # read alongside it by some torch versions
        WORKER_REPORT_ENV: error_file,
    })
    interface = _loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)  # one machine: talk over the loopback
    try:
        entrypoint(*args)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            _exit_now(exc.code or 0)
        _fail_now(error_file, {"message": str(exc.code), "reported": True}, str(exc.code))  # SystemExit("why")
    except BaseException as exc:
        trace = traceback.format_exc()
        _fail_now(error_file, {"message": f"{type(exc).__name__}: {exc}".strip(), "traceback": trace}, trace)
    _exit_now(0)


def _fail_now(error_file: str, report: dict[str, Any], text: str) -> None:
    """Leave ``report`` for the launcher, which prints it; print ``text`` here only if the
    report cannot be left. Then exit with status 1."""
    try:
        Path(error_file).write_text(json.dumps(report))
    except OSError:
        print(text.rstrip(), file=sys.stderr)
    _exit_now(1)


def _exit_now(status: int) -> None:
    """Flush the standard streams and end the process with ``status``, skipping the
    interpreter's teardown, where native threads of the process group's libraries may abort
    the process (SIGABRT) while other workers are still running."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)


@dataclass(frozen=True)
class _WorkerExit:
    """How a worker process ended: ``exitcode`` is the status, or minus the signal number."""

    rank: int
    pid: int
    exitcode: int
    message: str = ""
    traceback: str = ""
    reported: bool = False

    def signal_name(self) -> str:
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"


#: Signals that only come from outside (a user, the OOM killer, a scheduler): a worker ended by
#: one of them is the cause of a failure, never a consequence of another worker's.
_EXTERNAL_SIGNALS = frozenset(
    int(getattr(signal, name)) for name in ("SIGKILL", "SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


def _cause_order(failure: _WorkerExit) -> int:
    """Likelier causes first: an outside signal, then a failure the worker reported or an
    exception it raised, then another signal (an abort when a peer vanished), then a bare
    non-zero status (often a worker that learnt of another's failure)."""
    if failure.exitcode < 0:
        return 0 if -failure.exitcode in _EXTERNAL_SIGNALS else 3
    if failure.message:
        return 1 if failure.reported else 2
    return 4


def _describe_failures(failures: Sequence[_WorkerExit]) -> tuple[list[str], dict[int, str]]:
    """One line per failed worker, in the given order, and the tracebacks the workers wrote."""
    lines: list[str] = []
    tracebacks: dict[int, str] = {}
    for failure in failures:
        who = f"rank {failure.rank} (pid {failure.pid})"
        if failure.exitcode < 0:
            lines.append(f"{who} was killed by signal {failure.signal_name()}")
        elif failure.message:
            lines.append(f"{who}: {failure.message}" if failure.reported else f"{who} raised {failure.message}")
        else:
            lines.append(f"{who} exited with status {failure.exitcode}")
        if failure.traceback:
            tracebacks[failure.rank] = failure.traceback
    return lines, tracebacks


def _ended(rank: int, process: Any, error_file: Path) -> _WorkerExit:
    message = trace = ""
    reported = False
    try:
        report = json.loads(error_file.read_text())
        message, trace = str(report.get("message", "")), str(report.get("traceback", ""))
        reported = report.get("reported") is True
    except (OSError, ValueError, AttributeError):
        pass
    return _WorkerExit(rank, process.pid, process.exitcode, message, trace, reported)


def _supervise(processes: Sequence[Any], error_files: Sequence[Path], grace_s: float) -> list[_WorkerExit]:
    """Wait until every worker exited with status 0 (returns ``[]``) or one failed.

    After the first failure the other workers get ``grace_s`` seconds to end on their own (a
    worker usually fails soon after a peer does, and the first to exit is not always the cause).

    Returns:
        the failed workers, likelier causes first (:func:`_cause_order`), then in the order
        they were found dead.
    """
    running = set(range(len(processes)))
    found: list[int] = []
    deadline = None
    while running:
        # the sentinels wake this loop at once; the poll below also finds a worker whose
        # sentinel stays open because a child it forked holds it
        timeout = _POLL_S if deadline is None else min(_POLL_S, max(0.0, deadline - time.monotonic()))
        multiprocessing.connection.wait([processes[rank].sentinel for rank in running], timeout)
        for rank in sorted(running):
            if processes[rank].exitcode is not None:
                running.discard(rank)
                if processes[rank].exitcode != 0:
                    found.append(rank)
        if found and deadline is None:
            deadline = time.monotonic() + grace_s
        elif deadline is not None and time.monotonic() >= deadline:
            break
    failures = [_ended(rank, processes[rank], error_files[rank]) for rank in found]
    return sorted(failures, key=_cause_order)  # stable: the order found breaks ties


def _stop(processes: Sequence[Any], timeout_s: float) -> None:
    """SIGTERM to the workers still running; SIGKILL to those alive ``timeout_s`` seconds later."""
    alive = [process for process in processes if process.is_alive()]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in alive:
        if process.is_alive():
            process.kill()
            process.join()


class _LauncherSignal(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name


class _LauncherSignals:
    """The launcher's signal handling, from the main thread (elsewhere it does nothing).

    While active, SIGTERM and SIGHUP raise :class:`_LauncherSignal` and SIGINT raises
    :class:`KeyboardInterrupt` as usual; a signal the launcher inherited as ignored (``nohup``)
    stays ignored. On exit every handler is restored.
    """

    _SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
    _RAISING = tuple(signum for signum in _SIGNALS if signum != signal.SIGINT)

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _LauncherSignals:
        if self.active:
            self.previous = {signum: signal.getsignal(signum) for signum in self._SIGNALS}
            for signum in self._RAISING:
                if self.previous[signum] is not signal.SIG_IGN:
                    signal.signal(signum, self._interrupt)
        return self

    @staticmethod
    def _interrupt(signum: int, frame: Any) -> None:
        raise _LauncherSignal(signum)

    @contextmanager
    def sigint_deferred(self) -> Iterator[None]:
        """Hold SIGINT back for a moment, while a worker starts: a Ctrl-C meanwhile is raised
        again when the block ends, also when the block raised (by default a
        :class:`KeyboardInterrupt`; ignoring SIGINT instead would drop it, and starting a worker
        can take seconds on a busy machine).

        SIGINT is blocked in this thread, so a worker started meanwhile inherits the block (a
        signal mask survives ``exec``) and never prints a KeyboardInterrupt traceback, even
        while it imports, until its bootstrap ignores SIGINT and unblocks it. The launcher's
        other threads may still receive it: a handler that only notes it covers them. Where
        signal masks do not exist (Windows) SIGINT is ignored for the moment instead.
        """
        current = signal.getsignal(signal.SIGINT) if self.active else None
        if current is None or current is signal.SIG_IGN:  # another thread, inherited as ignored, or not Python's
            yield
            return
        if not hasattr(signal, "pthread_sigmask"):
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, handler)
            return
        received: list[int] = []

        def note(signum: int, frame: Any) -> None:
            received.append(signum)

        handler = signal.signal(signal.SIGINT, note)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one is noted
            signal.signal(signal.SIGINT, handler)
            if received:  # delivered now, to the handler that was there (KeyboardInterrupt by default)
                signal.raise_signal(signal.SIGINT)

    def ignore_all(self) -> None:
        """Ignore the three signals (while the workers are being stopped: a second Ctrl-C or
        SIGTERM must not cut that short)."""
        if self.active:
            for signum in self._SIGNALS:
                signal.signal(signum, signal.SIG_IGN)

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def launch(nproc: int, entrypoint: Callable[..., Any], *args: Any) -> None:
    """Run ``entrypoint(*args)`` in ``nproc`` worker processes on this machine.

    The workers are started with the ``spawn`` method; each finds ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment, as under
    ``torchrun``. The launcher hosts the rendezvous store (a :class:`torch.distributed.TCPStore`
    on 127.0.0.1 at a free port) and watches the workers (their process handles wake it at
    once; it also checks their exit statuses every 0.1 s). When one dies, raises or exits with
    a non-zero status, the others get :data:`FAILURE_GRACE_S` seconds to end on their own, then
    are stopped (SIGTERM, SIGKILL after :data:`SHUTDOWN_TIMEOUT_S` seconds); nothing is
    restarted. A worker may leave the reason it fails with :func:`report_failure`; the
    launcher's error carries the workers' messages and tracebacks, which they do not print
    (``snn train`` prints the traceback of the likeliest cause only).
    Workers ignore SIGINT and, on Linux, get SIGTERM if the launcher dies. Called from the main
    thread, the launcher stops the workers on Ctrl-C (then raises :class:`KeyboardInterrupt`),
    SIGTERM or SIGHUP (one it inherited as ignored stays ignored); from another thread it leaves
    signals alone.

    Args:
        nproc: number of worker processes, >= 2.
        entrypoint: a module-level function (it is pickled by reference).
        *args: its arguments (pickled).

    Raises:
        ValueError: ``nproc`` below 2.
        KeyboardInterrupt: Ctrl-C (SIGINT) reached the launcher; the workers were stopped.
        WorkerFailedError: a worker died (signal), raised, or exited with a non-zero status;
            lists every worker that failed by the end of the grace period, likelier causes
            first: one ended by an outside signal (SIGKILL, SIGTERM, SIGINT, SIGHUP), then a
            reported failure or a raised exception, then another signal, then a bare status.
    """
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # re-exported from torch._C at run time

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 2:
        raise ValueError(f"nproc: expected an int >= 2, got {nproc!r}")
    context = multiprocessing.get_context("spawn")
    if os.name == "posix":
        # started by the first worker's start otherwise, which unblocks SIGINT on its way and so
        # would let that worker see a Ctrl-C while it imports (see _LauncherSignals.sigint_deferred)
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    store = TCPStore(_HOST, 0, world_size=nproc, is_master=True, wait_for_workers=False,
                     timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    processes: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="snn-train-") as folder, _LauncherSignals() as signals:
        error_files = [Path(folder) / f"rank{rank}.json" for rank in range(nproc)]
        try:
            for rank in range(nproc):
                process = context.Process(
                    target=_worker_bootstrap, name=f"snn-train-rank{rank}",
                    args=(rank, nproc, store.port, os.getpid(), str(error_files[rank]), entrypoint, args),
                )
                with signals.sigint_deferred():  # a Ctrl-C meanwhile raises once the worker is listed
                    process.start()
                    processes.append(process)
            failures = _supervise(processes, error_files, FAILURE_GRACE_S)
        except KeyboardInterrupt:
            failures, stopped_by = [], "SIGINT"
        except _LauncherSignal as exc:
            failures, stopped_by = [], exc.name
        else:
            stopped_by = ""
        finally:
            signals.ignore_all()
            _stop(processes, SHUTDOWN_TIMEOUT_S)
            del store
    if stopped_by == "SIGINT":
        raise KeyboardInterrupt  # Ctrl-C: the workers are stopped; the caller reports an interruption
    if stopped_by:
        raise WorkerFailedError([f"the launcher received {stopped_by}; the workers were stopped"], {})
    if failures:
        raise WorkerFailedError(*_describe_failures(failures), cause_rank=failures[0].rank)

"""Distributed data-parallel training of spiking networks (``torch.distributed``, gloo, CPU).

Two worker processes (this file run as a script, ``python test_distributed.py --worker ...``)
train the same networks under :class:`torch.nn.parallel.DistributedDataParallel`, each on its
half of every global batch; the test process trains identical copies on the whole global
batches in one process and compares the final weights.

DDP averages the gradients of the ranks, so a rank's loss must be the *mean* over its local
batch and the single-process reference uses the mean over the global batch: with equal local
batch sizes the two gradients are the same number (``(mean_0 + mean_1) / 2 = mean_global``);
they differ only by float32 summation order.

Scenarios (all in one launch of two workers, a few seconds in total):

- ``bptt``: ``Linear -> LIFNode -> Linear -> ParametricLIFNode -> Linear`` in multi-step mode,
  TET loss (``snn.functional.temporal_efficient_training_cross_entropy``), ``reset_net`` before
  every batch, SGD with momentum; PLIF's learnable ``w`` is trained and compared too.
- ``ottt``: an OTTT network (``snn_online.OTTTSequential`` of ``OTTTLIFNode``) trained with
  ``snn.functional.ottt_online_training`` (one optimizer step per time step, so DDP
  all-reduces at every step), per-step MSE loss on one-hot targets.

Only 127.0.0.1 is used (a free port picked by the test, ``GLOO_SOCKET_IFNAME=lo``).
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

#: Tolerance on the final weights (max absolute difference) between DDP and one process.
WEIGHT_TOLERANCE = 1e-5
WORLD_SIZE = 2
STEPS = 4  # optimizer steps (BPTT) / sequences (OTTT)
LOCAL_BATCH = 3
T_BPTT = 5
T_OTTT = 4
FEATURES = 6
CLASSES = 3
SEED = 20240611


# ---------------------------------------------------------------------------------------------
# Models and data (shared by the workers and the single-process reference)
# ---------------------------------------------------------------------------------------------


def build_bptt_model() -> torch.nn.Module:
    """The multi-step LIF/PLIF network, initialised deterministically."""
    from snn import functional, layer, neuron

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        layer.Linear(FEATURES, 8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5),
        layer.Linear(8, 8),
        neuron.ParametricLIFNode(init_tau=3.0, v_threshold=0.5, v_reset=None),
        layer.Linear(8, CLASSES),
    )
    functional.set_step_mode(model, "m")
    return model


def build_ottt_model() -> torch.nn.Module:
    """An OTTT network: ``Linear -> OTTTLIFNode -> Linear -> OTTTLIFNode``."""
    from snn import layer
    from snn_online import OTTTLIFNode, OTTTSequential

    torch.manual_seed(SEED + 1)
    return OTTTSequential(
        layer.Linear(FEATURES, 8), OTTTLIFNode(v_threshold=0.4), layer.Linear(8, CLASSES), OTTTLIFNode(v_threshold=0.4)
    )


def global_batches() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The global batches of both scenarios (every process builds the same ones)."""
    gen = torch.Generator().manual_seed(SEED + 2)
    n = LOCAL_BATCH * WORLD_SIZE
    bptt = [
        (torch.rand(T_BPTT, n, FEATURES, generator=gen) * 1.5, torch.randint(0, CLASSES, (n,), generator=gen))
        for _ in range(STEPS)
    ]
    ottt = []
    for _ in range(STEPS):
        x = torch.rand(n, T_OTTT, FEATURES, generator=gen) * 1.5
        labels = torch.randint(0, CLASSES, (n,), generator=gen)
        target = torch.nn.functional.one_hot(labels, CLASSES).float().unsqueeze(1).expand(n, T_OTTT, CLASSES)
        ottt.append((x, target.contiguous()))
    return {"bptt": bptt, "ottt": ottt}


def local_part(tensor: torch.Tensor, rank: int, batch_dim: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous share of a global batch along ``batch_dim``."""
    return tensor.narrow(batch_dim, rank * LOCAL_BATCH, LOCAL_BATCH)


def ottt_step_loss(y_t: torch.Tensor, target_t: torch.Tensor) -> torch.Tensor:
    """Per-step loss of the OTTT scenario: MSE (mean over the local batch)."""
    return torch.nn.functional.mse_loss(y_t, target_t)


def train_bptt(model: torch.nn.Module, network: torch.nn.Module, rank: int | None) -> list[float]:
    """Train ``model`` (``network`` is what is called: the model or its DDP wrapper).

    ``rank=None``: the whole global batch (single-process reference). Returns the losses.
    """
    from snn import functional

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for x, y in global_batches()["bptt"]:
        if rank is not None:
            x, y = local_part(x, rank, 1), local_part(y, rank, 0)
        functional.reset_net(model)
        optimizer.zero_grad()
        loss = functional.temporal_efficient_training_cross_entropy(network(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def train_ottt(model: torch.nn.Module, network: torch.nn.Module, rank: int | None) -> list[float]:
    """Train with ``snn.functional.ottt_online_training`` (online updates), as :func:`train_bptt`."""
    from snn import functional

    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    losses = []
    for x, target in global_batches()["ottt"]:
        if rank is not None:
            x, target = local_part(x, rank, 0), local_part(target, rank, 0)
        functional.reset_net(model)
        loss, _ = functional.ottt_online_training(network, optimizer, x, target, ottt_step_loss, True)
        losses.append(float(loss.detach()))
    return losses


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The worker (run as a script)
# ---------------------------------------------------------------------------------------------


def worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=60),  # a lost peer ends the run instead of hanging it
    )
    try:
        results: dict[str, object] = {}
        for name, build, train in (("bptt", build_bptt_model, train_bptt), ("ottt", build_ottt_model, train_ottt)):
            model = build()
            ddp = DistributedDataParallel(model)
            losses = train(model, ddp, rank)
            results[name] = {"state": state(model), "losses": losses}
        dist.barrier()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(out_dir: Path, timeout: float = 120.0, attempts: int = 3) -> list[dict[str, object]]:
    """Run the two workers to completion and load what each saved.

    The free port is picked before the workers bind it; if another process takes it in between,
    the launch is retried on a new port.
    """
    env = dict(os.environ)
    env.update(GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for attempt in range(attempts):
        port = free_port()
        processes = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(rank), str(port), str(out_dir)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for rank in range(WORLD_SIZE)
        ]
        outputs = []
        try:
            for process in processes:
                outputs.append(process.communicate(timeout=timeout)[0])
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        failed = [(rank, p.returncode, out) for rank, (p, out) in enumerate(zip(processes, outputs)) if p.returncode]
        if not failed:
            return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]
        port_taken = any("address already in use" in out.lower() for _, _, out in failed)
        if not port_taken or attempt == attempts - 1:
            rank, code, out = failed[0]
            raise AssertionError(f"worker {rank} exited with {code}:\n{out}")
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    return launch(tmp_path_factory.mktemp("ddp"))

def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)

@pytest.mark.parametrize(
    ("scenario", "build", "train"),
    [("bptt", build_bptt_model, train_bptt), ("ottt", build_ottt_model, train_ottt)],
    ids=["bptt-lif-plif-tet", "ottt-online"],
)
def test_ddp_matches_single_process(
    ddp_results: list[dict[str, object]], scenario: str, build: Any, train: Any, record_property: Any
) -> None:
    model = build()
    initial = state(model)
    reference_losses = train(model, model, None)
    reference = state(model)
    ranks = [r[scenario] for r in ddp_results]  # type: ignore[index]  # JSON-loaded results: dicts
    # the ranks hold identical replicas (DDP's all-reduce keeps them in lock step)
    assert _max_difference(ranks[0]["state"], ranks[1]["state"]) == 0.0
    # training did move the weights (a test that cannot fail would compare initial values)
    assert _max_difference(initial, reference) > 1e-3
    if scenario == "bptt":
        assert not torch.equal(initial["3.w"], reference["3.w"]), "PLIF's w must be trained"
    difference = _max_difference(ranks[0]["state"], reference)
    record_property(f"ddp_{scenario}_max_weight_difference", difference)
    print(f"\n[{scenario}] max |w_ddp - w_single| = {difference:.3e}")
    assert difference <= WEIGHT_TOLERANCE
    # each rank's loss is the mean over its half; their mean is the global-batch loss
    for step, want in enumerate(reference_losses):
        got = (ranks[0]["losses"][step] + ranks[1]["losses"][step]) / 2
        if scenario == "bptt":
            assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), (step, got, want)
        else:  # OTTT returns the sum of per-step means over the local batch
            assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (step, got, want)

def test_neuron_state_is_per_rank_and_not_broadcast(ddp_results: list[dict[str, object]]) -> None:
    """Neuron potentials are memories, not buffers: state_dict (what DDP syncs) has no ``v``."""
    for result in ddp_results:
        keys = set(result["bptt"]["state"])  # type: ignore[index]  # as above
        assert not any(k.endswith(".v") or k == "v" for k in keys), keys
        assert "3.w" in keys


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} --worker RANK PORT OUT_DIR")

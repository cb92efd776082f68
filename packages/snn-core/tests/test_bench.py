"""Tests of ``snn bench`` (:mod:`snn.bench`) with tiny sizes; nothing here asserts on timing."""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import snn
from snn import bench

TINY = ["--T", "3", "--N", "64,96", "--kinds", "lif", "--repeats", "1", "--warmup", "0", "--device", "cpu"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snn bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def run_command(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = bench.run(parse(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_floor_bytes() -> None:
    assert bench.floor_bytes(4, 10, torch.float32) == {"forward": 480, "backward": 480, "inference": 320}
    assert bench.floor_bytes(4, 10, torch.float16) == {"forward": 240, "backward": 240, "inference": 160}


def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_command([*TINY, "--backends", "torch", "--json"])
    assert code == 0
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["device"] == "cpu" and report["repeats"] == 1 and report["threads"] >= 1
    torch_rows = [r for r in report["rows"] if r["backend"] == "torch"]
    assert [(r["kind"], r["T"], r["N"], r["dtype"]) for r in torch_rows] == [
        ("lif", 3, 64, "float32"), ("lif", 3, 96, "float32")
    ]
    for row in torch_rows:
        assert row["vs_torch"] == pytest.approx(1.0)
        for phase in ("forward", "backward", "inference"):
            assert row[f"{phase}_ms"] > 0
            floor = bench.floor_bytes(row["T"], row["N"], torch.float32)[phase]
            assert row[f"{phase}_gbps"] == pytest.approx(floor / (row[f"{phase}_ms"] * 1e-3) / 1e9)
    reference_rows = [r for r in report["rows"] if r["backend"] == bench.REFERENCE_NAME]
    if report["reference_version"] is None:
        assert any(s["backend"] == bench.REFERENCE_NAME for s in report["skipped"])
    else:
        assert len(reference_rows) == 2
        for row in reference_rows:
            assert row["vs_reference"] == pytest.approx(1.0)
            torch_row = next(r for r in torch_rows if r["N"] == row["N"])
            train_ratio = (row["forward_ms"] + row["backward_ms"]) / (torch_row["forward_ms"] + torch_row["backward_ms"])
            assert torch_row["vs_reference"] == pytest.approx(train_ratio)


def test_table_lists_rows_and_skips() -> None:
    code, stdout, _ = run_command([*TINY, "--no-reference"])
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split()[:5] == ["backend", "kind", "T", "N", "dtype"]
    assert set(lines[1]) <= {"-", " "}
    torch_lines = [line for line in lines if line.startswith("torch ")]
    assert len(torch_lines) == 2 and all(" lif " in line for line in torch_lines)
    assert "median of 1 runs" in stdout
    from snn.plugins import get_registry

    for name, info in get_registry().backends.items():
        reason = info.unavailable_reason()
        if reason is not None:  # e.g. triton / cupy without a GPU: listed with their reason
            assert f"skipped {name}: {reason}" in stdout


def test_timed_module_really_runs_backward() -> None:
    calls: list[str] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append("forward" if torch.is_grad_enabled() else "inference")
            return _Backward.apply(x)

    class _Backward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            calls.append("backward")
            return grad * 2

    x = torch.rand(3, 5)
    fwd, bwd, inf = bench.time_neuron(Probe(), x, torch.ones(3, 5), repeats=2, warmup=1)
    assert calls == ["forward", "backward", "inference"] * 3
    assert min(fwd, bwd, inf) > 0


def test_plugin_backend_is_measured(temporary_plugin) -> None:
    @snn.hookimpl
    def snn_register_backends(register):
        register(
            "fake", {"multi_step": "snn.backends.torch:multi_step"}, models=("lif",),
            devices=("cpu",), dtypes=(torch.float32,), surrogates=("Sigmoid",), probe=lambda: None,
        )
        register(
            "broken", {"multi_step": "snn.backends.torch:multi_step"}, models=("lif",),
            devices=("cpu",), dtypes=(torch.float32,), surrogates=("Sigmoid",),
            probe=lambda: "needs a quantum computer",
        )

    temporary_plugin(types.SimpleNamespace(snn_register_backends=snn_register_backends), name="fakes")
    report = bench.benchmark(
        backends=["torch", "fake", "broken"], kinds=["lif", "if"], Ts=[2], Ns=[16], repeats=1, warmup=0,
        reference=False,
    )
    measured = {(r.backend, r.kind) for r in report.rows}
    assert measured == {("torch", "lif"), ("torch", "if"), ("fake", "lif")}
    skipped = {(s.backend, s.kind): s.reason for s in report.skipped}
    assert skipped[("broken", None)] == "needs a quantum computer"
    assert skipped[("fake", "if")] == "no multi-step kernel for model if"


def test_spikes_are_checked_against_torch(temporary_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.backends.torch import multi_step

    def inverted(x_seq, states, config, *, learnables=(), store_state_seqs=False):
        spikes, last, seqs = multi_step(x_seq, states, config, learnables=learnables, store_state_seqs=store_state_seqs)
        return 1.0 - spikes, last, seqs

    module = types.ModuleType("bench_test_kernels")
    module.inverted = inverted
    monkeypatch.setitem(sys.modules, "bench_test_kernels", module)

    @snn.hookimpl
    def snn_register_backends(register):
        for name, target in (("same", "snn.backends.torch:multi_step"), ("wrong", "bench_test_kernels:inverted")):
            register(name, {"multi_step": target}, models=("lif",), devices=("cpu",), dtypes=(torch.float32,),
                     surrogates=("Sigmoid",), probe=lambda: None)

    temporary_plugin(types.SimpleNamespace(snn_register_backends=snn_register_backends), name="checked")
    report = bench.benchmark(backends=["torch", "same", "wrong"], Ts=[3], Ns=[50], repeats=1, warmup=0, reference=False)
    assert {r.backend: r.matches_torch for r in report.rows} == {"torch": None, "same": True, "wrong": False}


def test_dtype_not_served_is_skipped(temporary_plugin) -> None:
    @snn.hookimpl
    def snn_register_backends(register):
        register(
            "only64", {"multi_step": "snn.backends.torch:multi_step"}, models=("lif",),
            devices=("cpu",), dtypes=(torch.float64,), surrogates=("Sigmoid",), probe=lambda: None,
        )

    temporary_plugin(types.SimpleNamespace(snn_register_backends=snn_register_backends), name="only64")
    report = bench.benchmark(backends=["only64"], Ts=[2], Ns=[8], dtypes=["float32", "float64"],
                             repeats=1, warmup=0, reference=False)
    assert [(r.backend, r.dtype) for r in report.rows] == [("only64", "float64")]
    assert report.rows[0].vs_torch is None
    assert [(s.backend, s.dtype, s.reason) for s in report.skipped] == [("only64", "float32", "does not serve torch.float32")]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--backends", "nope"], ["unknown backend 'nope'", "'torch'"]),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nope"], ["device:"]),
        (["--repeats", "0"], ["repeats / warmup"]),
        (["--threads", "-1"], ["threads: expected 0"]),
        (["--threads", "100000"], ["threads: expected 0 (keep torch's setting) or at most the"]),
        (["--device", "mps"], ["device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'"]),
        (["--device", "cpu:1"], ["device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cpu:1'"]),
        (["--device", "meta"], ["device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'"]),
        (["--seed", str(10**23)], ["--seed: expected an integer in [-2**63, 2**64)", str(10**23)]),
        (["--models", "lif,nope"], ["models: expected registered neuron models", "'nope'"]),
        (["--baseline", "/no/such/checkout"], ["baseline: expected an snn checkout", "'/no/such/checkout'"]),
    ],
)
def test_errors(argv: list[str], expected: list[str]) -> None:
    code, stdout, stderr = run_command([*TINY, *argv, "--json"])
    assert code == 2
    assert stderr.startswith("snn bench: error: ")
    for text in expected:
        assert text in stderr
    assert "error" in json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--models", ","], ["--N", "0"], ["--T", "x"], ["--dtype", "int8"]])
def test_bad_lists_are_argparse_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)


# -- spread of the runs (issue 14.11) -------------------------------------------------------------


class _ScriptedClock:
    """``time.perf_counter`` replacement: each timed run lasts the scripted seconds per phase."""

    def __init__(self, runs: list[tuple[float, float, float]]) -> None:
        # each round first times one tensor copy (two reads, 1 ms apart), then _time_once reads
        # the clock five times: start, after forward, after backward, before and after inference
        self.steps = [step for fwd, bwd, inf in runs for step in (0.0, 0.001, 0.0, fwd, bwd, 0.0, inf)]
        self.now = 100.0

    def __call__(self) -> float:
        self.now += self.steps.pop(0)
        return self.now


def test_rows_keep_the_fastest_and_slowest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.bench import measure

    runs = [(0.001, 0.004, 0.002), (0.009, 0.005, 0.002), (0.002, 0.006, 0.002)]
    monkeypatch.setattr(measure.time, "perf_counter", _ScriptedClock(runs))
    report = bench.benchmark(backends=["torch"], Ts=[2], Ns=[8], repeats=3, warmup=0, reference=False)
    (row,) = report.rows
    assert (row.forward_min_ms, row.forward_ms, row.forward_max_ms) == pytest.approx((1.0, 2.0, 9.0))
    assert (row.backward_min_ms, row.backward_ms, row.backward_max_ms) == pytest.approx((4.0, 5.0, 6.0))
    assert (row.inference_min_ms, row.inference_ms, row.inference_max_ms) == pytest.approx((2.0, 2.0, 2.0))
    assert row.spread("forward") == pytest.approx(4.0) and row.spread("backward") == pytest.approx(0.4)
    assert row.wide_phases() == ["forward"]  # 4.0 > 0.5; 0.4 and 0.0 are within
    (warning,) = report.warnings
    assert "1 of 1 measurements spread widely" in warning and "torch lif T=2 N=8 float32 forward 1.00-9.00 ms" in warning
    table = bench.format_table(report)
    line = next(text for text in table.splitlines() if text.startswith("torch "))
    assert "2.000 (1.00-9.00)!" in line and "5.000 (4.00-6.00) " in line and "5.000 (4.00-6.00)!" not in line
    assert f"warning: {warning}" in table
    assert report.to_json()["warnings"] == [warning]


def test_quiet_measurements_carry_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.bench import measure

    runs = [(0.010, 0.020, 0.005), (0.011, 0.021, 0.005), (0.012, 0.022, 0.006)]
    monkeypatch.setattr(measure.time, "perf_counter", _ScriptedClock(runs))
    report = bench.benchmark(backends=["torch"], Ts=[2], Ns=[8], repeats=3, warmup=0, reference=False)
    assert report.rows[0].wide_phases() == [] and report.warnings == []
    table = bench.format_table(report)
    assert "warning" not in table and "11.000 (10.0-12.0)" in table


def test_json_mode_prints_the_warnings_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    from snn.bench import command

    row = bench.BenchRow("torch", "lif", 16, 4096, "float32", 20.0, 30.0, 5.0, forward_min_ms=9.0,
                         forward_max_ms=125.0, backward_min_ms=29.0, backward_max_ms=31.0,
                         inference_min_ms=5.0, inference_max_ms=5.0)
    fake = bench.BenchReport("cpu", [row], [], 5, 2, torch.__version__, None)
    monkeypatch.setattr(command, "benchmark", lambda **kwargs: fake)
    code, stdout, stderr = run_command([*TINY, "--json"])
    assert code == 0
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["rows"][0]["forward_max_ms"] == 125.0 and len(report["warnings"]) == 1
    assert stderr.startswith("snn bench: warning: 1 of 1 measurements spread widely")
    assert "forward 9.00-125 ms" in stderr


def test_repeated_values_are_measured_once() -> None:
    # as --backends torch,torch: every list keeps each value once, in the order given
    code, stdout, _ = run_command([*TINY, "--models", "lif,lif", "--T", "4,4", "--N", "64,64", "--backends", "torch,torch", "--json"])
    assert code == 0
    rows = json.loads(stdout.strip().splitlines()[-1])["rows"]
    assert len([r for r in rows if r["backend"] == "torch"]) == 1


def _this_checkout() -> Path:
    """The repository root snn is imported from; skips where snn is installed from a wheel."""
    root = Path(snn.__file__).resolve().parents[4]
    if not (root / "packages" / "snn-core" / "src" / "snn" / "__init__.py").is_file():
        pytest.skip("snn is not imported from a checkout")
    return root


def test_baseline_worker_reports_the_spikes_of_the_same_inputs() -> None:
    """The worker times a neuron of another checkout (here this one) on the benchmark's inputs."""
    from snn.bench.baseline import BaselineWorker, spike_checksum
    from snn.bench.measure import _inputs
    from snn.neuron import LIFNode

    worker = BaselineWorker(_this_checkout(), "LIFNode", 3, 50, torch.float32, torch.device("cpu"), seed=7)
    try:
        forward, backward, inference, checksum = worker.sample()
        again = worker.sample()[3]
    finally:
        worker.close()
    assert forward > 0 and backward > 0 and inference > 0
    x_seq, _ = _inputs(3, 50, torch.float32, torch.device("cpu"), 7)
    with torch.no_grad():
        expected = spike_checksum(LIFNode(step_mode="m", backend="torch")(x_seq))
    assert expected[0] > 0  # some spikes: the checksum is not trivially equal
    assert torch.equal(checksum, expected) and torch.equal(again, expected)


def test_baseline_worker_failure_names_the_error() -> None:
    from snn.bench.baseline import BaselineWorker

    with pytest.raises(RuntimeError, match="^baseline worker failed: AttributeError: .*NoSuchNode"):
        BaselineWorker(_this_checkout(), "NoSuchNode", 3, 50, torch.float32, torch.device("cpu"), seed=0)


def test_baseline_worker_with_a_noisy_error_stream_does_not_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warnings beyond a pipe's buffer (64 KiB) must not stop the worker while we wait for it."""
    import threading

    from snn.bench import baseline

    root = _this_checkout()
    noisy = 'import sys\nsys.stderr.write("w" * 300_000 + "\\n")\nsys.stderr.flush()\n'
    monkeypatch.setattr(baseline, "_WORKER", noisy + baseline._WORKER)
    outcome: list[object] = []

    def start() -> None:
        worker = baseline.BaselineWorker(root, "LIFNode", 2, 8, torch.float32, torch.device("cpu"), seed=0)
        try:
            outcome.append(worker.sample())
        finally:
            worker.close()

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the baseline worker stalled on its error output"
    assert len(outcome) == 1

"""benchmarks/gpu_bench.py runs end to end in --dry-run mode (tiny sizes, CPU, interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_bench.py"


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/gpu_bench.py is not in this checkout")
def test_dry_run_prints_a_table_and_writes_json(tmp_path, triton_ready):
    out = tmp_path / "bench.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--json", str(out), "--models", "if,lif,plif",
         "--backends", "torch,triton"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| model | dtype | T | N | phase | backend | median ms |" in result.stdout
    payload = json.loads(out.read_text())
    assert payload["dry_run"] is True and payload["copy_gbps"] > 0
    records = payload["records"]
    for backend in ("torch", "triton"):
        mine = [r for r in records if r["backend"] == backend]
        assert {(r["model"], r["dtype"]) for r in mine} == {
            ("if", "float32"), ("lif", "float32"), ("plif", "float32"), ("lif", "float16")
        }
        assert {r["phase"] for r in mine} == {"forward", "backward", "inference"}
        assert all(r["median_ms"] > 0 and r["gbps"] > 0 for r in mine), mine


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/gpu_bench.py is not in this checkout")
def test_unknown_model_is_refused():
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--models", "nosuch"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "nosuch" in result.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/gpu_bench.py is not in this checkout")
def test_without_gpu_and_without_dry_run_says_what_to_do():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--dry-run" in result.stderr

"""``snn bench`` measures the cpp backend next to torch, with the copy bandwidth of the same run.

Tiny sizes; nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import io
import json

import pytest

from snn import bench

pytestmark = pytest.mark.usefixtures("cpp_ready")


def test_rows_carry_the_copy_bandwidth_and_fractions():
    report = bench.benchmark(backends=["torch", "cpp"], kinds=["lif", "plif"], Ts=[3], Ns=[64], repeats=1,
                             warmup=0, reference=False)
    rows = {(r.backend, r.kind): r for r in report.rows}
    assert set(rows) == {("torch", "lif"), ("cpp", "lif"), ("torch", "plif"), ("cpp", "plif")}
    for row in rows.values():
        assert row.copy_gbps is not None and row.copy_gbps > 0
        for phase in ("forward", "backward", "inference"):
            assert row.of_copy(phase) == pytest.approx(getattr(row, f"{phase}_gbps") / row.copy_gbps)
        assert row.matches_torch is (None if row.backend == "torch" else True)  # torch: not compared with itself
    # one copy measurement per configuration, shared by its rows
    assert rows["torch", "lif"].copy_gbps == rows["cpp", "lif"].copy_gbps


def test_table_and_json_show_the_copy_columns():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = ["--backends", "torch,cpp", "--kinds", "lif", "--T", "2", "--N", "32", "--repeats", "1", "--warmup", "0",
            "--no-reference", "--device", "cpu"]
    out = io.StringIO()
    assert bench.run(parser.parse_args(argv), stdout=out, stderr=io.StringIO()) == 0
    header = out.getvalue().splitlines()[0].split()
    assert header[-4:] == ["GB/s", "fwd/copy", "bwd/copy", "inf/copy"] and "copy" in header
    cpp_line = next(line for line in out.getvalue().splitlines() if line.startswith("cpp "))
    assert cpp_line.rstrip().endswith("%")
    out = io.StringIO()
    assert bench.run(parser.parse_args([*argv, "--json"]), stdout=out, stderr=io.StringIO()) == 0
    rows = json.loads(out.getvalue().strip().splitlines()[-1])["rows"]
    assert all(r["copy_gbps"] > 0 for r in rows)
